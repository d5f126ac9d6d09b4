/* Host test driver: reads uint8 images (EEK_INPUT_SIZE bytes each, back to back) from a file and writes one line
 * per image: the exit the early-exit loop takes, the exit taken when stopping early for real, then every exit's
 * int16 logits. Usage: ./model images.bin outputs.txt */
#include <stdio.h>
#include "eekit_model.h"

int main(int argc, char **argv)
{
    static uint8_t image[EEK_INPUT_SIZE];
    static int16_t logits[EEK_NUM_EXITS][EEK_NUM_CLASSES], early[EEK_NUM_EXITS][EEK_NUM_CLASSES];
    FILE *in, *out;
    long count = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: %s images.bin outputs.txt\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "w");
    if (!in || !out) {
        fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    while (fread(image, 1, EEK_INPUT_SIZE, in) == EEK_INPUT_SIZE) {
        int k, o, taken = eek_infer(image, logits, 1), stopped = eek_infer(image, early, 0);
        fprintf(out, "%d %d", taken, stopped);
        for (k = 0; k < EEK_NUM_EXITS; k++)
            for (o = 0; o < EEK_NUM_CLASSES; o++)
                fprintf(out, " %d", logits[k][o]);
        fprintf(out, "\n");
        count++;
    }
    fclose(in);
    fclose(out);
    fprintf(stderr, "%ld images\n", count);
    return count > 0 ? 0 : 1;
}
