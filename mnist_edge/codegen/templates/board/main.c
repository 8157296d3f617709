/* mnist-edge on a board: classify the images of the host's file images.bin (784 bytes each, read
 * one at a time through semihosting, so a small flash and RAM hold any number), write every score
 * to scores.bin, and print a hash of every score (FNV-1a, 32 bit), the SysTick ticks spent in
 * inference and the peak stack use. A profiling build (-DMNIST_EDGE_PROFILE=1) also prints the
 * ticks of each step of the library. */
#include <stdint.h>

#include "model.h"

int board_semihost(int operation, const void *argument);
void board_write(const char *text);
uint32_t board_stack_peak(void);
int board_stack_overflowed(void);

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_FLEN 0x0C

static void write_hex(const char *label, uint32_t value) {
    char text[48];
    int i, n = 0;
    while (label[n]) { text[n] = label[n]; ++n; }
    for (i = 7; i >= 0; --i) text[n++] = "0123456789abcdef"[(value >> (4 * i)) & 0xFu];
    text[n++] = '\n';
    text[n] = 0;
    board_write(text);
}

static int open_file(const char *name, int mode) { /* mode 1: "rb", 5: "wb" */
    int length = 0;
    uint32_t block[3];
    while (name[length]) ++length;
    block[0] = (uint32_t)name;
    block[1] = (uint32_t)mode;
    block[2] = (uint32_t)length;
    return board_semihost(SYS_OPEN, block);
}

static int transfer(int operation, int handle, const void *buffer, uint32_t bytes) { /* 0: all of it */
    uint32_t block[3];
    block[0] = (uint32_t)handle;
    block[1] = (uint32_t)buffer;
    block[2] = bytes;
    return board_semihost(operation, block);
}

static uint32_t now(void) { return SYST_CVR; }

/* SysTick counts down from 2^24 - 1; one span is shorter than that (checked on the host). */
static uint32_t since(uint32_t start) { return (start - now()) & 0x00FFFFFFu; }

#if MNIST_EDGE_PROFILE
static uint32_t step_ticks[MNIST_EDGE_STEPS], step_start;
void mnist_edge_profile_begin(void) { step_start = now(); }
void mnist_edge_profile_end(int step) { step_ticks[step] += since(step_start); }
#endif

int main(void) {
    static uint8_t pixels[MNIST_EDGE_PIXELS];
    uint8_t scores[MNIST_EDGE_CLASSES];
    uint32_t hash = 2166136261u, ticks_low = 0, ticks_high = 0, images, i;
    int in, out, j;
    in = open_file("images.bin", 1);
    out = open_file("scores.bin", 5);
    if (in < 0 || out < 0) return 4;
    images = (uint32_t)board_semihost(SYS_FLEN, &in) / MNIST_EDGE_PIXELS;
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5; /* processor clock, no interrupt */
    for (i = 0; i < images; ++i) {
        uint32_t start, spent;
        if (transfer(SYS_READ, in, pixels, sizeof pixels) != 0) return 5;
        start = now();
        mnist_edge_predict(pixels, scores);
        spent = since(start);
        ticks_high += ticks_low + spent < ticks_low;
        ticks_low += spent;
        if (transfer(SYS_WRITE, out, scores, sizeof scores) != 0) return 6;
        for (j = 0; j < MNIST_EDGE_CLASSES; ++j) hash = (hash ^ scores[j]) * 16777619u;
    }
    transfer(SYS_CLOSE, in, 0, 0);
    transfer(SYS_CLOSE, out, 0, 0);
    write_hex("images ", images);
    write_hex("hash ", hash);
    write_hex("ticks_high ", ticks_high);
    write_hex("ticks ", ticks_low);
#if MNIST_EDGE_PROFILE
    for (j = 0; j < MNIST_EDGE_STEPS; ++j) write_hex("step ", step_ticks[j]);
#endif
    write_hex("stack ", board_stack_peak());
    return board_stack_overflowed() ? 7 : 0;
}
