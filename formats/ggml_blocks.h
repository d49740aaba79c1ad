/* Codecs of the ggml block types (internal to the library). Each
 * QK_BLOCKS_<T> macro expands to the traits-table fields
 * `to_float, from_float_ref, from_float` of that type (NULL where quantkit
 * has none yet). Owned by formats/ggml_blocks.c. */
#ifndef QK_GGML_BLOCKS_H
#define QK_GGML_BLOCKS_H

#include <stdint.h>

#define QK_BLOCKS_Q4_0 NULL, NULL, NULL
#define QK_BLOCKS_Q4_1 NULL, NULL, NULL
#define QK_BLOCKS_Q5_0 NULL, NULL, NULL
#define QK_BLOCKS_Q5_1 NULL, NULL, NULL
#define QK_BLOCKS_Q8_0 NULL, NULL, NULL
#define QK_BLOCKS_Q2_K NULL, NULL, NULL
#define QK_BLOCKS_Q3_K NULL, NULL, NULL
#define QK_BLOCKS_Q4_K NULL, NULL, NULL
#define QK_BLOCKS_Q5_K NULL, NULL, NULL
#define QK_BLOCKS_Q6_K NULL, NULL, NULL
#define QK_BLOCKS_IQ4_NL NULL, NULL, NULL
#define QK_BLOCKS_IQ4_XS NULL, NULL, NULL

#endif
