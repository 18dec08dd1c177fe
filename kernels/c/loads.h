/* C fast path, loads of the inputs that are not read in place: the twin of kernels/numba/loads.py
 * (same functions, same order). float16 predictions are decoded into a float32 buffer per block
 * and then computed as float32 ones; pos_weight of any broadcast shape is loaded per
 * block. A template, as blocks.h (after it: fb_by_column). */

/* n float16 values given as their bits (s) into buf as float32, exactly, with integer operations
 * gcc vectorises: a normal half's exponent rebiased (+112) in place, a subnormal one's 10-bit
 * integer mantissa times 2^-24 (exact; no subnormal float32 arithmetic), inf and NaN kept. */
FB_INLINE void FB_NAME(fb_load_halves)(const uint16_t *s, int64_t n, float *buf)
{
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        const int32_t h = s[k], em = h & 0x7fff;
        const int32_t sub = fb_bits_f32((float)em * 0x1p-24f);
        const int32_t bits = em >= 0x7c00 ? ((em << 13) | 0x7f800000)
                           : em >= 0x400 ? (em << 13) + (112 << 23) : sub;
        buf[k] = fb_from_bits_f32(bits | ((h & 0x8000) << 16));
    }
}

/* The pos_weight of each element of the block [b0, b0 + n) into pbuf: element (i, j) of the pass
 * (i counted from a->row0) has a->pos_w[i·pw_rs + j·pw_cs], pw_cs 0 or 1: per label (pw_rs 0),
 * per sample (pw_rs 1, pw_cs 0) or per element (pw_rs = ncols). */
FB_INLINE void FB_NAME(fb_load_pos_weights)(const fb_args *a, int64_t b0, int64_t n, double *pbuf)
{
    const int64_t ncols = a->ncols, rs = a->pw_rs, cs = a->pw_cs;
    int64_t j = b0 % ncols;
    if (rs == 0) {
        fb_by_column(pbuf, a->pos_w, j, ncols, n);
        return;
    }
    for (int64_t k = 0, row = a->row0 + b0 / ncols; k < n; row++, j = 0) {
        const int64_t run = n - k < ncols - j ? n - k : ncols - j;
        const double *v = a->pos_w + row * rs + j * cs;
        if (cs == 0) {
            const double c = v[0];
            for (int64_t t = 0; t < run; t++) pbuf[k + t] = c;
        } else {
            memcpy(pbuf + k, v, (size_t)run * sizeof(double));
        }
        k += run;
    }
}

/* n elements of `size` bytes (1, 2, 4 or 8) from element `start` of src, `stride` elements apart,
 * into buf: a block of strided input, read in place (stride 2 with a constant stride, which gcc
 * vectorises with permutes). */
FB_INLINE void FB_NAME(fb_gather)(const void *src, int64_t stride, int size, int64_t start,
                                  int64_t n, void *buf)
{
#define FB_GATHER(T) {                                                                      \
        const T *s_ = (const T *)src + start * stride;                                      \
        T *d_ = (T *)buf;                                                                   \
        if (stride == 2)                                                                    \
            for (int64_t k = 0; k < n; k++) d_[k] = s_[2 * k];                              \
        else                                                                                \
            for (int64_t k = 0; k < n; k++) d_[k] = s_[k * stride];                         \
    }
    if (size == 1) FB_GATHER(uint8_t)
    else if (size == 2) FB_GATHER(uint16_t)
    else if (size == 4) FB_GATHER(uint32_t)
    else FB_GATHER(uint64_t)
#undef FB_GATHER
}

/* The block [b0, b0 + n) of a pass over strided input (a->strided): its labels, predictions,
 * weights and mask gathered into gy, gp, gw, gm, and *ab a copy of *a whose arrays point
 * b0 elements before each buffer, so that the block's loads read element b0 + k at k of its
 * buffer (the addresses formed as integers: they lie outside the buffers). Returns ab. */
FB_INLINE const fb_args *FB_NAME(fb_gather_block)(const fb_args *a, fb_args *ab, int64_t b0,
                                                  int64_t n, uint64_t *gy, uint64_t *gp,
                                                  uint64_t *gw, uint8_t *gm)
{
    const int y_size = a->y_kind == FB_Y_U8 ? 1 : a->y_kind == FB_Y_F32 ? 4 : 8;
    const int p_size = a->p_half ? 2 : (int)sizeof(FB_T);
    const int w_size = a->w_kind == FB_W_F32 ? 4 : 8;
    *ab = *a;
    FB_NAME(fb_gather)(a->y, a->y_stride, y_size, b0, n, gy);
    ab->y = (const void *)((uintptr_t)gy - (uintptr_t)(b0 * y_size));
    FB_NAME(fb_gather)(a->p, a->p_stride, p_size, b0, n, gp);
    ab->p = (const void *)((uintptr_t)gp - (uintptr_t)(b0 * p_size));
    if (a->w_kind != FB_W_NONE) {
        FB_NAME(fb_gather)(a->w, a->w_stride, w_size, b0, n, gw);
        ab->w = (const void *)((uintptr_t)gw - (uintptr_t)(b0 * w_size));
    }
    if (a->mask != NULL) {
        FB_NAME(fb_gather)(a->mask, a->m_stride, 1, b0, n, gm);
        ab->mask = (const uint8_t *)((uintptr_t)gm - (uintptr_t)b0);
    }
    return ab;
}
