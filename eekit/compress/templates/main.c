/* Test driver, built three ways (the same file on a PC and on the emulated Cortex-M, where newlib's semihosting
 * gives fopen and printf):
 *
 *   default          ./model images.bin outputs.txt [steps.txt]
 *       reads uint8 images (EEK_INPUT_SIZE bytes each, back to back) and writes one line per image: the exit the
 *       early-exit loop takes, the exit taken when stopping early for real, then every exit's int16 logits.
 *       With -DEEK_STEP_TIMES (Cortex-M only) it also writes, per image, the SysTick ticks at the end of every step
 *       into steps.txt, after a first line timing a loop of a known number of instructions.
 *   -DEEK_POWER_FAIL_TEST  ./model images.bin index nv.bin fail_at run_all result.txt
 *       one inference of image `index`. nv.bin, when it exists, is the persistent memory left by the last run: an
 *       interrupted inference is resumed. At the fail_at-th tick (0: never) the program saves the persistent memory
 *       to nv.bin and dies, as a power failure would (SRAM, stack and registers are lost). */
#include <stdio.h>
#include <stdlib.h>
#include "eekit_model.h"

static uint8_t image[EEK_INPUT_SIZE];
static int16_t logits[EEK_NUM_EXITS][EEK_NUM_CLASSES];

#ifdef EEK_POWER_FAIL_TEST
static long ticks, fail_at, boundaries[256];
static int n_boundaries;
static long long macs;
static const char *nv_path, *result_path;

void eek_mac(void) { macs++; }

void eek_tick(int where)
{
    ticks++;
    if (where != 1 && n_boundaries < 256) boundaries[n_boundaries++] = ticks;
    if (ticks == fail_at) {  /* power failure: only the persistent struct survives */
        uint32_t bytes;
        void *nv = eek_persistent(&bytes);
        FILE *f = fopen(nv_path, "wb"), *r = fopen(result_path, "w");
        if (!f || !r || fwrite(nv, 1, bytes, f) != bytes) exit(2);
        fclose(f);
        fprintf(r, "failed %ld %lld\n", ticks, macs);
        fclose(r);
        exit(3);
    }
}

int main(int argc, char **argv)
{
    uint32_t bytes;
    void *nv = eek_persistent(&bytes);
    int k, o, taken, resumed = 0;
    FILE *f;
    if (argc != 7) {
        fprintf(stderr, "usage: %s images.bin index nv.bin fail_at run_all result.txt\n", argv[0]);
        return 2;
    }
    nv_path = argv[3];
    fail_at = atol(argv[4]);
    result_path = argv[6];
    f = fopen(argv[1], "rb");
    if (!f || fseek(f, atol(argv[2]) * (long)EEK_INPUT_SIZE, SEEK_SET) != 0 ||
        fread(image, 1, EEK_INPUT_SIZE, f) != EEK_INPUT_SIZE) return 2;
    fclose(f);
    f = fopen(nv_path, "rb");  /* the persistent memory after a reset */
    if (f) {
        if (fread(nv, 1, bytes, f) != bytes) return 2;
        fclose(f);
    }
    if (eek_pending() || eek_done()) {
        resumed = 1;
        taken = eek_resume(image, logits);
    } else {
        taken = eek_infer(image, logits, atoi(argv[5]));
    }
    f = fopen(result_path, "w");
    if (!f) return 2;
    fprintf(f, "done %d %d %ld %lld", resumed, taken, ticks, macs);
    for (k = 0; k < EEK_NUM_EXITS; k++)
        for (o = 0; o < EEK_NUM_CLASSES; o++)
            fprintf(f, " %d", k <= taken || atoi(argv[5]) ? logits[k][o] : 0);
    fprintf(f, "\nboundaries");
    for (k = 0; k < n_boundaries; k++) fprintf(f, " %ld", boundaries[k]);
    fprintf(f, "\n");
    fclose(f);
    return 0;
}

#else

#ifdef EEK_STEP_TIMES
/* QEMU's -icount shift=0 clock: one nanosecond per instruction; SysTick counts down at the core clock */
#define SYST ((volatile uint32_t *)0xE000E010)
static uint32_t t0, step_ticks[256];
static int n_steps;

void eek_step_done(void)
{
    if (n_steps < 256) step_ticks[n_steps++] = (t0 - SYST[2]) & 0xFFFFFFu;
}

static uint32_t calibrate(uint32_t loops)  /* 2 * loops instructions: subs + bne */
{
    uint32_t start = SYST[2];
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(loops));
    return (start - SYST[2]) & 0xFFFFFFu;
}
#endif

int main(int argc, char **argv)
{
    static int16_t early[EEK_NUM_EXITS][EEK_NUM_CLASSES];
    FILE *in, *out, *times = NULL;
    long count = 0;
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s images.bin outputs.txt [steps.txt]\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "w");
    if (!in || !out) {
        fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
#ifdef EEK_STEP_TIMES
    SYST[1] = 0xFFFFFFu;  /* reload */
    SYST[2] = 0;
    SYST[0] = 5;  /* enable, core clock, no interrupt */
    if (argc == 4 && (times = fopen(argv[3], "w")) != NULL)
        fprintf(times, "calibration %lu %lu\n", 2000000ul, (unsigned long)calibrate(1000000u));
#endif
    while (fread(image, 1, EEK_INPUT_SIZE, in) == EEK_INPUT_SIZE) {
        int k, o, taken, stopped;
#ifdef EEK_STEP_TIMES
        int recorded;
        n_steps = 0;
        t0 = SYST[2];
#endif
        taken = eek_infer(image, logits, 1);
#ifdef EEK_STEP_TIMES
        recorded = n_steps;
#endif
        stopped = eek_infer(image, early, 0);
        fprintf(out, "%d %d", taken, stopped);
        for (k = 0; k < EEK_NUM_EXITS; k++)
            for (o = 0; o < EEK_NUM_CLASSES; o++)
                fprintf(out, " %d", logits[k][o]);
        fprintf(out, "\n");
#ifdef EEK_STEP_TIMES
        if (times) {
            for (k = 0; k < recorded; k++) fprintf(times, "%lu ", (unsigned long)step_ticks[k]);
            fprintf(times, "\n");
        }
#endif
        count++;
    }
    fclose(in);
    fclose(out);
    if (times) fclose(times);
    fprintf(stderr, "%ld images\n", count);
    return count > 0 ? 0 : 1;
}
#endif
