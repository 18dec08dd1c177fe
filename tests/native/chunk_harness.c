/* The C fast path on fixed inputs, for comparing builds across CPUs (`make check-aarch64`): runs
 * fb_chunk over every chunk of a few passes (the fast-path routes: float32 and float64 product
 * paths, logarithm per element, soft labels, weights with pos_weight per column, focal loss,
 * groups, gradients) and prints each partial sum, and a hash of each gradient, as exact bits.
 *
 * Usage: chunk_harness [v4|v3|base]  (the variant, as FASTBCE_SIMD; default: the best one)
 * The first line names the variant in use; the other lines must be identical between builds that
 * give the same bits. Inputs come from an integer generator, so they are the same everywhere. */
#include <inttypes.h>
#include <stdio.h>

#include "c/dispatch.h" /* -I kernels: kernels/c/math.h must not shadow <math.h> */

#define ROWS 1500
#define COLS 40
#define N (ROWS * COLS)
#define CHUNK_ROWS 300 /* chunks of whole rows, as fastbce/_engine.py cuts them */
#define GROUPS 7

static uint64_t state = 0x9E3779B97F4A7C15ULL;

static uint32_t next_u32(void)
{
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(state >> 33);
}

/* uniform in (0, 1), 24 bits, exact in float32 and float64 */
static double next_unit(void) { return ((next_u32() >> 8) + 0.5) * 0x1p-24; }

static uint8_t y8[N];
static double yf64[N], p64[N], x64[N], w64[N], pos_w[COLS], g64[N];
static float p32[N], x32[N], w32[N], g32[N];
static int64_t groups[ROWS];
#define N_CHUNKS (ROWS / CHUNK_ROWS)
static double sums[N_CHUNKS * (GROUPS > COLS ? GROUPS : COLS) * 2]; /* (chunks, slots, 2) */

/* FNV-1a over the bytes of the gradient */
static uint64_t hash(const void *data, size_t size)
{
    const unsigned char *b = (const unsigned char *)data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < size; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static fb_args defaults(void)
{
    fb_args a;
    memset(&a, 0, sizeof a);
    a.y = y8; a.y_kind = FB_Y_U8;
    a.keep = 1.0; a.shift = 0.0;
    a.alpha = -1.0; a.gamma_n = -1;
    a.w_kind = FB_W_NONE;
    a.nan_mode = FB_NAN_PROPAGATE;
    /* the losses at the clip bounds of eps = 1e-7 (the bounds: clip_f32, clip_f64) */
    a.lo_pos = 0x1.01e3b843eaa73p+4; a.lo_neg = 0x1.ad7f2b1414ae8p-24;
    a.hi_pos = 0x1.ad7f2b1049b9fp-24; a.hi_neg = 0x1.01e3b8440ed2fp+4;
    a.grad_scale = 1.0;
    a.want_loss = 1;
    a.mode = FB_MODE_ALL;
    a.ncols = COLS;
    a.n_slots = 1;
    a.g_kind = FB_G_I64;
    a.sums = sums;
    return a;
}

static void clip_f32(fb_args *a) { a->clip_lo = 0x1.ad7f2ap-24; a->clip_hi = 0x1.fffffcp-1; }
static void clip_f64(fb_args *a) { a->clip_lo = 0x1.ad7f29abcaf48p-24; a->clip_hi = 0x1.fffffca501acbp-1; }

/* Runs one pass chunk by chunk and prints its sums (and gradient hash). */
static void run(const char *name, fb_args a, int f64)
{
    int flags = 0;
    memset(sums, 0, sizeof sums);
    for (int c = 0; c < N_CHUNKS; c++) {
        int64_t start = (int64_t)c * CHUNK_ROWS * COLS, stop = start + (int64_t)CHUNK_ROWS * COLS;
        flags |= f64 ? fb_chunk_f64(&a, c, start, stop) : fb_chunk_f32(&a, c, start, stop);
    }
    printf("%s flags=%d\n", name, flags);
    for (int c = 0; c < N_CHUNKS; c++)
        for (int64_t s = 0; s < a.n_slots; s++)
            printf("  chunk %d slot %" PRId64 ": %a %a\n", c, s, sums[(c * a.n_slots + s) * 2],
                   sums[(c * a.n_slots + s) * 2 + 1]);
    if (a.grad != NULL)
        printf("  grad hash %016" PRIx64 "\n", f64 ? hash(g64, sizeof g64) : hash(g32, sizeof g32));
}

int main(int argc, char **argv)
{
    const char *variant = fb_select(argc > 1 ? argv[1] : NULL);
    printf("variant: %s\n", variant);
    for (int i = 0; i < N; i++) {
        y8[i] = next_u32() % 10 < 3;
        double u = next_unit();
        p64[i] = u;
        p32[i] = (float)u;
        x64[i] = (next_unit() - 0.5) * 16.0;
        x32[i] = (float)x64[i];
        w64[i] = next_unit() * 2.0;
        w32[i] = (float)w64[i];
        yf64[i] = i % 3 == 0 ? (double)y8[i] : next_unit();
    }
    for (int j = 0; j < COLS; j++) pos_w[j] = 0.5 + 0.125 * j;
    for (int r = 0; r < ROWS; r++) groups[r] = (int64_t)(next_u32() % GROUPS);

    fb_args a;
    a = defaults(); a.p = p32; clip_f32(&a);
    run("f32 mean (product path)", a, 0);
    a = defaults(); a.p = p64; clip_f64(&a);
    run("f64 mean (product path, exact FMA)", a, 1);
    a = defaults(); a.p = p64; clip_f64(&a); a.y = yf64; a.y_kind = FB_Y_F64;
    run("f64 soft labels", a, 1);
    a = defaults(); a.p = x32; a.logits = 1; a.w = w32; a.w_kind = FB_W_F32; a.pos_w = pos_w;
    a.mode = FB_MODE_COLS; a.n_slots = COLS; a.grad = g32; a.grad_scale = 0x1p-10;
    run("f32 logits, weights, pos_weight, per column, gradient", a, 0);
    a = defaults(); a.p = p64; clip_f64(&a); a.focal = 1; a.gamma = 2.0; a.gamma_n = 2; a.alpha = 0.25;
    a.grad = g64;
    run("f64 focal, gradient", a, 1);
    a = defaults(); a.p = p32; clip_f32(&a); a.keep = 0.9; a.shift = 0.05; a.mode = FB_MODE_GROUPS;
    a.groups = groups; a.n_slots = GROUPS;
    run("f32 label smoothing, by group", a, 0);
    a = defaults(); a.p = x64; a.logits = 1; a.mode = FB_MODE_COLS; a.n_slots = COLS; a.grad = g64;
    a.want_loss = 0;
    run("f64 logits, per column, gradient only", a, 1);
    return 0;
}
