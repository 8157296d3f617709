/* mnist-edge on a board: classify the embedded test images, print each digit, a hash of every
 * score (FNV-1a, 32 bit), the SysTick ticks spent in inference and the peak stack use. */
#include <stdint.h>

#include "images.h"
#include "model.h"

void board_write(const char *text);
uint32_t board_stack_peak(void);

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static void write_hex(const char *label, uint32_t value) {
    char text[32];
    int i, n = 0;
    while (label[n]) { text[n] = label[n]; ++n; }
    for (i = 7; i >= 0; --i) text[n++] = "0123456789abcdef"[(value >> (4 * i)) & 0xFu];
    text[n++] = '\n';
    text[n] = 0;
    board_write(text);
}

int main(void) {
    static char digits[MNIST_EDGE_BOARD_IMAGES + 2];
    uint8_t scores[MNIST_EDGE_CLASSES];
    uint32_t hash = 2166136261u, ticks = 0;
    int i, j;
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5; /* processor clock, no interrupt */
    for (i = 0; i < MNIST_EDGE_BOARD_IMAGES; ++i) {
        uint32_t start = SYST_CVR, stop;
        digits[i] = (char)('0' + mnist_edge_predict(board_images[i], scores));
        stop = SYST_CVR;
        ticks += (start - stop) & 0x00FFFFFFu; /* counts down; one inference < 2^24 ticks */
        for (j = 0; j < MNIST_EDGE_CLASSES; ++j) hash = (hash ^ scores[j]) * 16777619u;
    }
    digits[MNIST_EDGE_BOARD_IMAGES] = '\n';
    digits[MNIST_EDGE_BOARD_IMAGES + 1] = 0;
    board_write("digits ");
    board_write(digits);
    write_hex("hash ", hash);
    write_hex("ticks ", ticks);
    write_hex("stack ", board_stack_peak());
    return 0;
}
