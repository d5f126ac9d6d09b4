/* Integer kernels (C99, no float, no malloc). Every layer is a convolution: a Linear layer is a 1x1 conv over a
 * 1x1 image, since flattening a C-order (channel, row, column) array costs nothing. Weights are dense or CSR
 * (values + uint16 column indices + uint16 row pointers), one row per output channel. */

/* floor((acc * m + 2^(shift-1)) / 2^shift), clamped to [lo, hi]: the requantization of eekit.compress.quantize */
static int32_t eek_requant(int32_t acc, int32_t m, uint8_t shift, int32_t lo, int32_t hi)
{
    int64_t v = (int64_t)acc * m + ((int64_t)1 << (shift - 1));
    int64_t y = v >= 0 ? (v >> shift) : -((-v - 1) >> shift) - 1; /* floor, whatever >> does to negatives */
    if (y < lo) y = lo;
    if (y > hi) y = hi;
    return (int32_t)y;
}

/* the accumulator of output channel oc at output position (y, x), before requantization */
static int32_t eek_acc(const eek_layer *L, const int8_t *in, int32_t oc, int32_t y, int32_t x)
{
    int32_t acc = L->bias[oc];
    int32_t kk = (int32_t)L->k * L->k;
    if (L->rowptr) {
        uint16_t j;
        for (j = L->rowptr[oc]; j < L->rowptr[oc + 1]; j++) {
            int32_t col = L->idx[j];
            int32_t ci = col / kk, r = col % kk;
            int32_t iy = y + r / L->k - L->pad, ix = x + r % L->k - L->pad;
            if (iy >= 0 && iy < L->h && ix >= 0 && ix < L->w) {
                acc += (int32_t)L->weight[j] * in[(ci * L->h + iy) * L->w + ix];
                EEK_MAC();
            }
        }
    } else {
        const eek_w_t *wrow = L->weight + (int32_t)oc * L->cin * kk;
        int32_t ci, ky, kx;
        for (ci = 0; ci < L->cin; ci++)
            for (ky = 0; ky < L->k; ky++) {
                int32_t iy = y + ky - L->pad;
                if (iy < 0 || iy >= L->h) continue;
                for (kx = 0; kx < L->k; kx++) {
                    int32_t ix = x + kx - L->pad;
                    if (ix < 0 || ix >= L->w) continue;
                    acc += (int32_t)wrow[(ci * L->k + ky) * L->k + kx] * in[(ci * L->h + iy) * L->w + ix];
                    EEK_MAC();
                }
            }
    }
    return acc;
}

/* one layer: conv (or linear) + requantization + optional ReLU + optional fused 2x2 max-pool. Each output channel
 * reads the input buffer and writes only its own slice of the output, so after a reset the layer goes on from the
 * first channel not committed (eek_nv.oc, persistent): a power failure costs at most one channel's work. */
static void eek_layer_run(const eek_layer *L, const int8_t *in, void *out)
{
    int32_t oh = L->h + 2 * L->pad - L->k + 1, ow = L->w + 2 * L->pad - L->k + 1;
    int32_t step = L->pool ? 2 : 1, ph = oh / step, pw = ow / step;
    int32_t lo = L->relu ? 0 : -L->out_max, oc, y, x, dy, dx;
    for (oc = eek_nv.oc; oc < L->cout; eek_nv.oc = ++oc)  /* commit each channel */
        for (y = 0; y < ph; y++)
            for (x = 0; x < pw; x++) {
                int32_t best = lo;
                for (dy = 0; dy < step; dy++)
                    for (dx = 0; dx < step; dx++) {
                        int32_t v = eek_requant(eek_acc(L, in, oc, y * step + dy, x * step + dx), L->m[oc],
                                                L->shift[oc], lo, L->out_max);
                        if (v > best) best = v;
                    }
                if (L->out16)
                    ((int16_t *)out)[(oc * ph + y) * pw + x] = (int16_t)best;
                else
                    ((int8_t *)out)[(oc * ph + y) * pw + x] = (int8_t)best;
                EEK_TICK(1);
            }
}

/* the largest value of window (i, j) of channel ch when (h, w) is max-pooled to p x p (PyTorch's adaptive
 * windows: rows floor(i h / p) to ceil((i + 1) h / p)) */
static int32_t eek_pool_max(const int8_t *feat, int32_t ch, int32_t h, int32_t w, int32_t i, int32_t j, int32_t p)
{
    int32_t y0 = i * h / p, y1 = ((i + 1) * h + p - 1) / p, x0 = j * w / p, x1 = ((j + 1) * w + p - 1) / p;
    int32_t best = -128, y, x;
    for (y = y0; y < y1; y++)
        for (x = x0; x < x1; x++)
            if (feat[(ch * h + y) * w + x] > best) best = feat[(ch * h + y) * w + x];
    return best;
}

#ifdef EEK_SHARED_HEAD
/* the shared head's next block: adaptive max-pool of this exit point's features, rescaled to the head's input
 * scale, multiplied into the running int32 accumulators (columns [start, end) of the head's weight). It reads
 * acc_in and writes acc_out, never updating in place, so a step redone after a reset gives the same sums. */
static void eek_shared_block(const int8_t *feat, int32_t c, int32_t h, int32_t w, int32_t m, uint8_t shift,
                             int32_t start, int32_t end, int8_t *pooled, const int32_t *acc_in, int32_t *acc)
{
    int32_t ch, i, j, o, n = 0;
    for (ch = 0; ch < c; ch++)
        for (i = 0; i < EEK_HEAD_POOL; i++)
            for (j = 0; j < EEK_HEAD_POOL; j++)
                pooled[n++] = (int8_t)eek_requant(eek_pool_max(feat, ch, h, w, i, j, EEK_HEAD_POOL), m, shift, -127,
                                                  127);
    for (o = 0; o < EEK_NUM_CLASSES; o++) {
        acc[o] = acc_in[o];
        if (EEK_HEAD.rowptr) {
            uint16_t k;
            for (k = EEK_HEAD.rowptr[o]; k < EEK_HEAD.rowptr[o + 1]; k++)
                if (EEK_HEAD.idx[k] >= start && EEK_HEAD.idx[k] < end) {
                    acc[o] += (int32_t)EEK_HEAD.weight[k] * pooled[EEK_HEAD.idx[k] - start];
                    EEK_MAC();
                }
        } else {
            for (i = start; i < end; i++) {
                acc[o] += (int32_t)EEK_HEAD.weight[(int32_t)o * EEK_HEAD.cin + i] * pooled[i - start];
                EEK_MAC();
            }
        }
        EEK_TICK(1);
    }
}
#else
/* an exit head's pooling: (c, h, w) int8 features max-pooled to (c, p, p), same scale (max commutes with it) */
static void eek_pool_run(const int8_t *feat, int32_t c, int32_t h, int32_t w, int32_t p, int8_t *out)
{
    int32_t ch, i, j;
    for (ch = 0; ch < c; ch++)
        for (i = 0; i < p; i++)
            for (j = 0; j < p; j++) {
                out[(ch * p + i) * p + j] = (int8_t)eek_pool_max(feat, ch, h, w, i, j, p);
                EEK_TICK(1);
            }
}
#endif

#ifdef EEK_RESIDUAL
/* a residual add: both int8 inputs brought to the output scale by their own multiplier and one shift,
 * out = floor((skip * m1 + body * m2 + 2^(shift-1)) / 2^shift). It writes a third buffer, one channel at a time
 * (committed in eek_nv.oc like a layer's), so a step redone after a reset reads intact inputs. */
static void eek_add_run(const int8_t *skip, const int8_t *body, int8_t *out, int32_t c, int32_t hw, int32_t m1,
                        int32_t m2, uint8_t shift, int32_t lo, int32_t hi)
{
    int32_t ch, i;
    for (ch = eek_nv.oc; ch < c; eek_nv.oc = ++ch)
        for (i = ch * hw; i < (ch + 1) * hw; i++) {
            out[i] = (int8_t)eek_requant((int32_t)skip[i] * m1 + (int32_t)body[i] * m2, 1, shift, lo, hi);
            EEK_TICK(1);
        }
}
#endif

/* the integer confidence: top-1 minus top-2 logit */
static int32_t eek_margin(const int16_t *logits)
{
    int32_t first = -32768, second = -32768, o;
    for (o = 0; o < EEK_NUM_CLASSES; o++) {
        if (logits[o] > first) { second = first; first = logits[o]; }
        else if (logits[o] > second) second = logits[o];
    }
    return first - second;
}

int eek_argmax(const int16_t *logits)
{
    int o, best = 0;
    for (o = 1; o < EEK_NUM_CLASSES; o++)
        if (logits[o] > logits[best]) best = o;
    return best;
}
