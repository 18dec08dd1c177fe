/* One variant of the fast-path kernels (included by fastbce_simd.h once per instruction set, with
 * FB_V(name) naming it, FB_TARGET its target attribute and FB_FMAF/FB_FMA the multiply-adds):
 * the element math (fastbce_math.h) and the chunk kernel (fastbce_chunk.h) for float32 and
 * float64 predictions (float64 first: focal loss uses its float64 functions for float32
 * predictions too). Not a header of its own. */

#define FB_INLINE static inline __attribute__((always_inline)) FB_TARGET

#include "fastbce_math.h"

#define FB_T double
#define FB_NAME(name) FB_V(name##_f64)
#define FB_LOG FB_V(fb_log_f64)
#define FB_EXP FB_V(fb_exp_neg_f64)
#define FB_FMAT FB_FMA
#define FB_ABS __builtin_fabs
#include "fastbce_chunk.h"
#undef FB_T
#undef FB_NAME
#undef FB_LOG
#undef FB_EXP
#undef FB_FMAT
#undef FB_ABS

#define FB_T float
#define FB_NAME(name) FB_V(name##_f32)
#define FB_LOG FB_V(fb_log_f32)
#define FB_EXP FB_V(fb_exp_neg_f32)
#define FB_FMAT FB_FMAF
#define FB_ABS __builtin_fabsf
#include "fastbce_chunk.h"
#undef FB_T
#undef FB_NAME
#undef FB_LOG
#undef FB_EXP
#undef FB_FMAT
#undef FB_ABS

#undef FB_INLINE
#undef FB_V
#undef FB_TARGET
#undef FB_F64_LANES
#undef FB_EXACT_FMA
#undef FB_FMAF
#undef FB_FMA
