/* The codes and sizes of kernels/__init__.py, for the C fast path and the Cython module (which
 * reads them from here): reduction modes, nan_policy, error flags, the kinds of labels, weights and
 * group ids, and the sizes that fix the order of every sum. tests/test_codes.py checks that each
 * value equals kernels/__init__.py's. */
#ifndef FB_CODES_H
#define FB_CODES_H

/* reduction modes: where an element's loss is summed */
#define FB_MODE_ALL 0
#define FB_MODE_ROWS 1
#define FB_MODE_COLS 2
#define FB_MODE_GROUPS 3

/* nan_policy */
#define FB_NAN_PROPAGATE 0
#define FB_NAN_RAISE 1
#define FB_NAN_OMIT 2

/* bits of the per-chunk error flags */
#define FB_FLAG_LABEL 1
#define FB_FLAG_PRED 2
#define FB_FLAG_NAN 4
#define FB_FLAG_WEIGHT 8
#define FB_FLAG_POS_WEIGHT 16
#define FB_FLAG_GROUP 32

/* label kinds */
#define FB_Y_U8 0
#define FB_Y_F32 1
#define FB_Y_F64 2
/* weight kinds */
#define FB_W_NONE 0
#define FB_W_F32 1
#define FB_W_F64 2
/* group id kinds: ids are read in place as int64 or int32 */
#define FB_G_I64 0
#define FB_G_I32 1

/* sizes */
#define FB_LANES 16         /* element k of a chunk is summed into float64 lane k % FB_LANES */
#define FB_BLOCK 512        /* elements per block: a block's buffers stay in L1 */
#define FB_PROD_LANES 64    /* lanes of the product path: 4 independent chains per SIMD lane */
#define FB_SPLIT_BLOCKS 3   /* blocks of the product path between two fb_split of its lanes */
#define FB_ROW_PRODUCT_COLS 160 /* rows (or groups of rows) this long take the product path */
/* 1-D input by group on the product path: a group's product is split when it leaves this range */
#define FB_GROUP_PRODUCT_MIN 0x1p-900
#define FB_GROUP_PRODUCT_MAX 0x1p900

/* element passes (elements.h): outputs, chunk size, operand kinds */
#define FB_ELEMENT_LOSS 0
#define FB_ELEMENT_GRAD_HESS 1
#define FB_ELEMENT_CHUNK 65536
#define FB_K_NONE 0
#define FB_K_U8 1
#define FB_K_F16 2
#define FB_K_F32 3
#define FB_K_F64 4

/* margin and overlap losses (kernels/c/margin.h) */
#define FB_Y_I8 3           /* label kind: int8 (hinge labels -1, 0, 1) */
#define FB_LOSS_HINGE 0
#define FB_LOSS_SQUARED_HINGE 1
#define FB_LOSS_OVERLAP 2   /* the soft counts of Dice and Tversky */
#define FB_MARGIN_STATS 4   /* sums per slot of a margin pass */

/* the flags of a rank call (kernels/c/rank.h) */
#define FB_RANK_SOFT 1      /* a kept label that is not 0 or 1 (NaN aside) */
#define FB_RANK_NAN 2       /* a kept NaN label or prediction */
#define FB_RANK_WEIGHT 4    /* a kept weight that is negative, inf or NaN */
#define FB_RADIX_BITS 11   /* bits of a radix-sort digit */
#define FB_INSERTION 32    /* buckets of at most this many items: insertion sort */
#define FB_WALK_RANGES 16  /* ranges of a big slot's walk */
/* histogram pass: extra sums of a slot before its calibration bins (NaN count, Σw·(q-y)², tp, fp) */
#define FB_HIST_EXTRA 4
/* histogram pass: interleaved copies of the calibration bins (one sum for all) */
#define FB_HIST_COPIES 4

#endif
