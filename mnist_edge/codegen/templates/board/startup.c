/* mnist-edge: minimal Cortex-M startup for the boards under QEMU (Cortex-M0 to M55). Copies .data,
 * clears .bss, paints the stack (to measure its peak use), enables the FPU where there is one, and
 * calls main; semihosting (bkpt 0xAB) carries files and text out and the exit status back to QEMU.
 * The same code serves every board: what differs between chips is their memory, which each
 * board's linker script gives (__stack_top is the top of its RAM). */
#include <stdint.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_limit, __stack_top;
int main(void);
void reset_handler(void);
void fault_handler(void);
int board_semihost(int operation, const void *argument);
void board_write(const char *text);
void board_exit(int status);
uint32_t board_stack_peak(void);
int board_stack_overflowed(void);

#define STACK_PAINT 0xA5A5A5A5u

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), reset_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler,
};

int board_semihost(int operation, const void *argument) {
    register int r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void board_write(const char *text) { board_semihost(0x04, text); /* SYS_WRITE0 */ }

void board_exit(int status) {
    const uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)status};
    board_semihost(0x20, block); /* SYS_EXIT_EXTENDED */
    for (;;) {
    }
}

/* Bytes of stack ever used: the painted words below the top that are no longer the paint. */
uint32_t board_stack_peak(void) {
    const uint32_t *word = &__stack_limit;
    while (word < &__stack_top && *word == STACK_PAINT) ++word;
    return (uint32_t)((const uint8_t *)&__stack_top - (const uint8_t *)word);
}

/* The stack reached the end of the static data: the lowest painted word was overwritten. */
int board_stack_overflowed(void) { return (&__stack_limit)[0] != STACK_PAINT; }

void fault_handler(void) {
    board_write("fault\n");
    board_exit(3);
}

void reset_handler(void) {
    uint32_t *to = &__data_start;
    const uint32_t *from = &__data_load;
    volatile uint32_t *paint;
    register uint32_t *sp __asm__("sp");
    while (to < &__data_end) *to++ = *from++;
    for (to = &__bss_start; to < &__bss_end; ++to) *to = 0;
    for (paint = &__stack_limit; paint < (volatile uint32_t *)sp - 16; ++paint) *paint = STACK_PAINT;
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: full access to CP10 and CP11 */
    __asm__ volatile("dsb\n\tisb");
#endif
    board_exit(main());
}
