
/* ---- the resumable early-exit loop (FreeML's anytime inference). An inference is a fixed list of steps (the
 * input lookup, each layer, each exit's head); every step reads persistent buffers and writes other persistent
 * buffers, so a step cut short by a reset is simply redone (a layer from its first uncommitted output channel).
 * Writing eek_nv.step (one aligned word) commits a step. */

#define EEK_NUM_STEPS @STEPS@

/* the input: each channel's uint8 pixels through that channel's lookup table */
static void eek_input(const uint8_t *image, int8_t *out)
{
    int32_t i;
    for (i = 0; i < EEK_INPUT_SIZE; i++) out[i] = eek_lut[(i / EEK_PLANE) * 256 + image[i]];
}

/* the early-exit rule on exit k's logits (already in eek_nv.logits[k]); 1 when the inference stops here */
static int eek_decide(int k)
{
    if (!eek_nv.decided && eek_margin(eek_nv.logits[k]) >= eek_threshold[k]) {
        eek_nv.taken = k;  /* idempotent: a redo of this step sets the same values */
        eek_nv.decided = 1;
    }
    return eek_nv.decided && eek_nv.taken == k && !eek_nv.run_all;
}

#ifdef EEK_SHARED_HEAD
static void eek_start_step(const uint8_t *image)
{
    int32_t i;
    eek_input(image, eek_nv.buf_a);
    for (i = 0; i < EEK_NUM_CLASSES; i++) eek_nv.head_acc[0][i] = EEK_HEAD.bias[i];
}

/* early exit k's logits from the shared head's accumulators; 1 when the inference stops here */
static int eek_exit_step(int k, const int32_t *acc)
{
    int32_t i;
    for (i = 0; i < EEK_NUM_CLASSES; i++)
        eek_nv.logits[k][i] = (int16_t)eek_requant(acc[i], EEK_HEAD.m[i], EEK_HEAD.shift[i], -EEK_HEAD.out_max,
                                                   EEK_HEAD.out_max);
    return eek_decide(k);
}
#endif

static int eek_finish(int16_t logits[EEK_NUM_EXITS][EEK_NUM_CLASSES])
{
    int k, o, last = eek_nv.run_all ? EEK_NUM_EXITS - 1 : eek_nv.taken;
    eek_nv.step = EEK_NUM_STEPS;  /* commit: done (the result stays readable after a reset) */
    for (k = 0; k <= last; k++)
        for (o = 0; o < EEK_NUM_CLASSES; o++)
            logits[k][o] = eek_nv.logits[k][o];
    return eek_nv.taken;
}

void eek_start(int run_all)
{
    eek_nv.magic = 0;  /* invalidate first: a reset in here starts the inference over */
    eek_nv.taken = EEK_NUM_EXITS - 1;
    eek_nv.decided = 0;
    eek_nv.run_all = run_all;
    eek_nv.oc = 0;
    eek_nv.step = 0;
    eek_nv.magic = EEK_NV_MAGIC;
}

int eek_pending(void)
{
    return eek_nv.magic == EEK_NV_MAGIC && eek_nv.step < EEK_NUM_STEPS;
}

int eek_done(void)
{
    return eek_nv.magic == EEK_NV_MAGIC && eek_nv.step == EEK_NUM_STEPS;
}

void *eek_persistent(uint32_t *bytes)
{
    *bytes = (uint32_t)sizeof eek_nv;
    return (void *)&eek_nv;
}

int eek_resume(const uint8_t *image, int16_t logits[EEK_NUM_EXITS][EEK_NUM_CLASSES])
{
    while (eek_nv.step < EEK_NUM_STEPS) {
        EEK_TICK(0);
        switch (eek_nv.step) {
@CASES@
        }
        EEK_TICK(2);
        eek_nv.oc = 0;  /* a reset between these two lines redoes the step: its input is intact */
        eek_nv.step = eek_nv.step + 1;  /* commit */
    }
    return eek_finish(logits);
}

int eek_infer(const uint8_t *image, int16_t logits[EEK_NUM_EXITS][EEK_NUM_CLASSES], int run_all)
{
    eek_start(run_all);
    return eek_resume(image, logits);
}
