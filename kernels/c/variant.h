/* One instruction-set variant of the C fast path (C only: Numba compiles for the CPU it runs on).
 * dispatch.h includes this file once per variant, with FB_V(name) naming its functions, FB_TARGET
 * its target attribute and FB_FMAF/FB_FMA its multiply-adds. It instantiates the math (math.h)
 * once, then the templates forms.h, blocks.h, chunk.h and elements.h for float64 and for float32 predictions
 * (float64 first: focal loss calls its float64 functions for float32 predictions too). Not a
 * header of its own. */

#define FB_INLINE static inline __attribute__((always_inline)) FB_TARGET
#define FB_ONE ((FB_T)1)
#define FB_ZERO ((FB_T)0)

#include "math.h"

#define FB_T double
#define FB_NAME(name) FB_V(name##_f64)
#define FB_LOG FB_V(fb_log_f64)
#define FB_EXP FB_V(fb_exp_neg_f64)
#define FB_FMAT FB_FMA
#define FB_ABS __builtin_fabs
#include "forms.h"
#include "blocks.h"
#include "loads.h"
#include "chunk.h"
#include "elements.h"
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
#include "forms.h"
#include "blocks.h"
#include "loads.h"
#include "chunk.h"
#include "elements.h"
#undef FB_T
#undef FB_NAME
#undef FB_LOG
#undef FB_EXP
#undef FB_FMAT
#undef FB_ABS

#undef FB_ONE
#undef FB_ZERO
#undef FB_INLINE
#undef FB_V
#undef FB_TARGET
#undef FB_F64_LANES
#undef FB_EXACT_FMA
#undef FB_FMAF
#undef FB_FMA
