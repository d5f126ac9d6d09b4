/* Cortex-M3 start-up for QEMU's mps2-an385 board: the vector table (initial stack pointer, reset handler) and a
 * reset handler that enters newlib's C start-up (semihosting: argv, fopen and printf go to the host). */
#include <stdint.h>

extern void _start(void);
extern uint32_t __stack_top;

static void eek_fault(void)
{
    for (;;) {
    }
}

void eek_reset(void);

void eek_reset(void)
{
    _start();
    eek_fault();
}

/* the vector table: initial stack pointer, then the reset handler and the fault handlers */
struct eek_vector_table {
    uint32_t *stack;
    void (*handlers[15])(void);
};

__attribute__((section(".vectors"), used)) const struct eek_vector_table eek_vectors = {
    &__stack_top, {eek_reset, eek_fault, eek_fault, eek_fault, eek_fault, eek_fault, 0, 0, 0, 0, eek_fault,
                   eek_fault, 0, eek_fault, eek_fault}};
