/* Byte-level BPE (GGUF "gpt2", tokenizer.json ByteLevel) as llama.cpp's
 * llm_tokenizer_bpe runs it:
 *
 *   1. Pre-tokenize each raw fragment into words with llama.cpp's
 *      hand-written matcher for the GPT-2 regex
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      or, for Llama-3 style vocabularies (pre "llama3", "llama-bpe", ...),
 *        (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *      Text is read as llama.cpp's unicode_cpts_from_utf8 reads it: the lead
 *      byte gives the length, continuation bytes must be 10xxxxxx, and an
 *      invalid byte becomes U+FFFD (so invalid UTF-8 does not round-trip).
 *   2. Re-encode each word's code points as UTF-8 and map every byte to the
 *      GPT-2 byte-to-unicode alphabet (printable bytes stand for themselves,
 *      the 68 others become U+0100..U+0143 in byte order).
 *   3. Merge: a binary heap of adjacent symbol pairs keyed by merge rank
 *      (lowest first, ties to the leftmost); a popped pair is stale when
 *      either side has changed length since it was pushed (symbols only
 *      grow, so a length check is a text check). Symbols sit in a linked
 *      list, so a merge costs O(log n), never a rescan.
 *   4. Each final symbol is a token, or else each of its bytes that is a
 *      one-byte token (llama.cpp silently drops the others).
 *
 * Unicode classes: \p{L} and \p{N} are the general categories L* and N* of
 * Unicode 14.0 (table below, generated with Python's unicodedata), \s is
 * the White_Space property. llama.cpp's tables come from a later Unicode
 * version: code points assigned after 14.0 may be classed differently;
 * ASCII and everything assigned by 14.0 agree.
 *
 * Exact with llama.cpp for pre types using these two regexes (gpt-2, mpt,
 * olmo, jais, ... and llama3, llama-bpe, dbrx, smaug-bpe). Every other pre
 * name ("default" included, which is what tokenizer.json gives, as the
 * vocab reader cannot identify the pre-tokenizer) uses the GPT-2 regex,
 * where llama.cpp would run its own regex set for that name.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ------------------------------------------------------- Unicode classes */

enum { U_L = 1, U_N = 2 };

typedef struct urange {
    uint32_t lo, hi;
    uint8_t cls;
} urange;

/* General categories L* (U_L) and N* (U_N) above U+007F, Unicode 14.0,
 * sorted. Generated with Python 3.11's unicodedata (unidata 14.0.0): for c
 * in 0x80..0x10FFFF, unicodedata.category(chr(c))[0] 'L' -> U_L, 'N' -> U_N,
 * consecutive code points of one class merged into a range. */
static const urange k_ranges[] = {
    {0xAA, 0xAA, U_L}, {0xB2, 0xB3, U_N}, {0xB5, 0xB5, U_L}, {0xB9, 0xB9, U_N}, {0xBA, 0xBA, U_L}, {0xBC, 0xBE, U_N},
    {0xC0, 0xD6, U_L}, {0xD8, 0xF6, U_L}, {0xF8, 0x2C1, U_L}, {0x2C6, 0x2D1, U_L}, {0x2E0, 0x2E4, U_L},
    {0x2EC, 0x2EC, U_L}, {0x2EE, 0x2EE, U_L}, {0x370, 0x374, U_L}, {0x376, 0x377, U_L}, {0x37A, 0x37D, U_L},
    {0x37F, 0x37F, U_L}, {0x386, 0x386, U_L}, {0x388, 0x38A, U_L}, {0x38C, 0x38C, U_L}, {0x38E, 0x3A1, U_L},
    {0x3A3, 0x3F5, U_L}, {0x3F7, 0x481, U_L}, {0x48A, 0x52F, U_L}, {0x531, 0x556, U_L}, {0x559, 0x559, U_L},
    {0x560, 0x588, U_L}, {0x5D0, 0x5EA, U_L}, {0x5EF, 0x5F2, U_L}, {0x620, 0x64A, U_L}, {0x660, 0x669, U_N},
    {0x66E, 0x66F, U_L}, {0x671, 0x6D3, U_L}, {0x6D5, 0x6D5, U_L}, {0x6E5, 0x6E6, U_L}, {0x6EE, 0x6EF, U_L},
    {0x6F0, 0x6F9, U_N}, {0x6FA, 0x6FC, U_L}, {0x6FF, 0x6FF, U_L}, {0x710, 0x710, U_L}, {0x712, 0x72F, U_L},
    {0x74D, 0x7A5, U_L}, {0x7B1, 0x7B1, U_L}, {0x7C0, 0x7C9, U_N}, {0x7CA, 0x7EA, U_L}, {0x7F4, 0x7F5, U_L},
    {0x7FA, 0x7FA, U_L}, {0x800, 0x815, U_L}, {0x81A, 0x81A, U_L}, {0x824, 0x824, U_L}, {0x828, 0x828, U_L},
    {0x840, 0x858, U_L}, {0x860, 0x86A, U_L}, {0x870, 0x887, U_L}, {0x889, 0x88E, U_L}, {0x8A0, 0x8C9, U_L},
    {0x904, 0x939, U_L}, {0x93D, 0x93D, U_L}, {0x950, 0x950, U_L}, {0x958, 0x961, U_L}, {0x966, 0x96F, U_N},
    {0x971, 0x980, U_L}, {0x985, 0x98C, U_L}, {0x98F, 0x990, U_L}, {0x993, 0x9A8, U_L}, {0x9AA, 0x9B0, U_L},
    {0x9B2, 0x9B2, U_L}, {0x9B6, 0x9B9, U_L}, {0x9BD, 0x9BD, U_L}, {0x9CE, 0x9CE, U_L}, {0x9DC, 0x9DD, U_L},
    {0x9DF, 0x9E1, U_L}, {0x9E6, 0x9EF, U_N}, {0x9F0, 0x9F1, U_L}, {0x9F4, 0x9F9, U_N}, {0x9FC, 0x9FC, U_L},
    {0xA05, 0xA0A, U_L}, {0xA0F, 0xA10, U_L}, {0xA13, 0xA28, U_L}, {0xA2A, 0xA30, U_L}, {0xA32, 0xA33, U_L},
    {0xA35, 0xA36, U_L}, {0xA38, 0xA39, U_L}, {0xA59, 0xA5C, U_L}, {0xA5E, 0xA5E, U_L}, {0xA66, 0xA6F, U_N},
    {0xA72, 0xA74, U_L}, {0xA85, 0xA8D, U_L}, {0xA8F, 0xA91, U_L}, {0xA93, 0xAA8, U_L}, {0xAAA, 0xAB0, U_L},
    {0xAB2, 0xAB3, U_L}, {0xAB5, 0xAB9, U_L}, {0xABD, 0xABD, U_L}, {0xAD0, 0xAD0, U_L}, {0xAE0, 0xAE1, U_L},
    {0xAE6, 0xAEF, U_N}, {0xAF9, 0xAF9, U_L}, {0xB05, 0xB0C, U_L}, {0xB0F, 0xB10, U_L}, {0xB13, 0xB28, U_L},
    {0xB2A, 0xB30, U_L}, {0xB32, 0xB33, U_L}, {0xB35, 0xB39, U_L}, {0xB3D, 0xB3D, U_L}, {0xB5C, 0xB5D, U_L},
    {0xB5F, 0xB61, U_L}, {0xB66, 0xB6F, U_N}, {0xB71, 0xB71, U_L}, {0xB72, 0xB77, U_N}, {0xB83, 0xB83, U_L},
    {0xB85, 0xB8A, U_L}, {0xB8E, 0xB90, U_L}, {0xB92, 0xB95, U_L}, {0xB99, 0xB9A, U_L}, {0xB9C, 0xB9C, U_L},
    {0xB9E, 0xB9F, U_L}, {0xBA3, 0xBA4, U_L}, {0xBA8, 0xBAA, U_L}, {0xBAE, 0xBB9, U_L}, {0xBD0, 0xBD0, U_L},
    {0xBE6, 0xBF2, U_N}, {0xC05, 0xC0C, U_L}, {0xC0E, 0xC10, U_L}, {0xC12, 0xC28, U_L}, {0xC2A, 0xC39, U_L},
    {0xC3D, 0xC3D, U_L}, {0xC58, 0xC5A, U_L}, {0xC5D, 0xC5D, U_L}, {0xC60, 0xC61, U_L}, {0xC66, 0xC6F, U_N},
    {0xC78, 0xC7E, U_N}, {0xC80, 0xC80, U_L}, {0xC85, 0xC8C, U_L}, {0xC8E, 0xC90, U_L}, {0xC92, 0xCA8, U_L},
    {0xCAA, 0xCB3, U_L}, {0xCB5, 0xCB9, U_L}, {0xCBD, 0xCBD, U_L}, {0xCDD, 0xCDE, U_L}, {0xCE0, 0xCE1, U_L},
    {0xCE6, 0xCEF, U_N}, {0xCF1, 0xCF2, U_L}, {0xD04, 0xD0C, U_L}, {0xD0E, 0xD10, U_L}, {0xD12, 0xD3A, U_L},
    {0xD3D, 0xD3D, U_L}, {0xD4E, 0xD4E, U_L}, {0xD54, 0xD56, U_L}, {0xD58, 0xD5E, U_N}, {0xD5F, 0xD61, U_L},
    {0xD66, 0xD78, U_N}, {0xD7A, 0xD7F, U_L}, {0xD85, 0xD96, U_L}, {0xD9A, 0xDB1, U_L}, {0xDB3, 0xDBB, U_L},
    {0xDBD, 0xDBD, U_L}, {0xDC0, 0xDC6, U_L}, {0xDE6, 0xDEF, U_N}, {0xE01, 0xE30, U_L}, {0xE32, 0xE33, U_L},
    {0xE40, 0xE46, U_L}, {0xE50, 0xE59, U_N}, {0xE81, 0xE82, U_L}, {0xE84, 0xE84, U_L}, {0xE86, 0xE8A, U_L},
    {0xE8C, 0xEA3, U_L}, {0xEA5, 0xEA5, U_L}, {0xEA7, 0xEB0, U_L}, {0xEB2, 0xEB3, U_L}, {0xEBD, 0xEBD, U_L},
    {0xEC0, 0xEC4, U_L}, {0xEC6, 0xEC6, U_L}, {0xED0, 0xED9, U_N}, {0xEDC, 0xEDF, U_L}, {0xF00, 0xF00, U_L},
    {0xF20, 0xF33, U_N}, {0xF40, 0xF47, U_L}, {0xF49, 0xF6C, U_L}, {0xF88, 0xF8C, U_L}, {0x1000, 0x102A, U_L},
    {0x103F, 0x103F, U_L}, {0x1040, 0x1049, U_N}, {0x1050, 0x1055, U_L}, {0x105A, 0x105D, U_L}, {0x1061, 0x1061, U_L},
    {0x1065, 0x1066, U_L}, {0x106E, 0x1070, U_L}, {0x1075, 0x1081, U_L}, {0x108E, 0x108E, U_L}, {0x1090, 0x1099, U_N},
    {0x10A0, 0x10C5, U_L}, {0x10C7, 0x10C7, U_L}, {0x10CD, 0x10CD, U_L}, {0x10D0, 0x10FA, U_L}, {0x10FC, 0x1248, U_L},
    {0x124A, 0x124D, U_L}, {0x1250, 0x1256, U_L}, {0x1258, 0x1258, U_L}, {0x125A, 0x125D, U_L}, {0x1260, 0x1288, U_L},
    {0x128A, 0x128D, U_L}, {0x1290, 0x12B0, U_L}, {0x12B2, 0x12B5, U_L}, {0x12B8, 0x12BE, U_L}, {0x12C0, 0x12C0, U_L},
    {0x12C2, 0x12C5, U_L}, {0x12C8, 0x12D6, U_L}, {0x12D8, 0x1310, U_L}, {0x1312, 0x1315, U_L}, {0x1318, 0x135A, U_L},
    {0x1369, 0x137C, U_N}, {0x1380, 0x138F, U_L}, {0x13A0, 0x13F5, U_L}, {0x13F8, 0x13FD, U_L}, {0x1401, 0x166C, U_L},
    {0x166F, 0x167F, U_L}, {0x1681, 0x169A, U_L}, {0x16A0, 0x16EA, U_L}, {0x16EE, 0x16F0, U_N}, {0x16F1, 0x16F8, U_L},
    {0x1700, 0x1711, U_L}, {0x171F, 0x1731, U_L}, {0x1740, 0x1751, U_L}, {0x1760, 0x176C, U_L}, {0x176E, 0x1770, U_L},
    {0x1780, 0x17B3, U_L}, {0x17D7, 0x17D7, U_L}, {0x17DC, 0x17DC, U_L}, {0x17E0, 0x17E9, U_N}, {0x17F0, 0x17F9, U_N},
    {0x1810, 0x1819, U_N}, {0x1820, 0x1878, U_L}, {0x1880, 0x1884, U_L}, {0x1887, 0x18A8, U_L}, {0x18AA, 0x18AA, U_L},
    {0x18B0, 0x18F5, U_L}, {0x1900, 0x191E, U_L}, {0x1946, 0x194F, U_N}, {0x1950, 0x196D, U_L}, {0x1970, 0x1974, U_L},
    {0x1980, 0x19AB, U_L}, {0x19B0, 0x19C9, U_L}, {0x19D0, 0x19DA, U_N}, {0x1A00, 0x1A16, U_L}, {0x1A20, 0x1A54, U_L},
    {0x1A80, 0x1A89, U_N}, {0x1A90, 0x1A99, U_N}, {0x1AA7, 0x1AA7, U_L}, {0x1B05, 0x1B33, U_L}, {0x1B45, 0x1B4C, U_L},
    {0x1B50, 0x1B59, U_N}, {0x1B83, 0x1BA0, U_L}, {0x1BAE, 0x1BAF, U_L}, {0x1BB0, 0x1BB9, U_N}, {0x1BBA, 0x1BE5, U_L},
    {0x1C00, 0x1C23, U_L}, {0x1C40, 0x1C49, U_N}, {0x1C4D, 0x1C4F, U_L}, {0x1C50, 0x1C59, U_N}, {0x1C5A, 0x1C7D, U_L},
    {0x1C80, 0x1C88, U_L}, {0x1C90, 0x1CBA, U_L}, {0x1CBD, 0x1CBF, U_L}, {0x1CE9, 0x1CEC, U_L}, {0x1CEE, 0x1CF3, U_L},
    {0x1CF5, 0x1CF6, U_L}, {0x1CFA, 0x1CFA, U_L}, {0x1D00, 0x1DBF, U_L}, {0x1E00, 0x1F15, U_L}, {0x1F18, 0x1F1D, U_L},
    {0x1F20, 0x1F45, U_L}, {0x1F48, 0x1F4D, U_L}, {0x1F50, 0x1F57, U_L}, {0x1F59, 0x1F59, U_L}, {0x1F5B, 0x1F5B, U_L},
    {0x1F5D, 0x1F5D, U_L}, {0x1F5F, 0x1F7D, U_L}, {0x1F80, 0x1FB4, U_L}, {0x1FB6, 0x1FBC, U_L}, {0x1FBE, 0x1FBE, U_L},
    {0x1FC2, 0x1FC4, U_L}, {0x1FC6, 0x1FCC, U_L}, {0x1FD0, 0x1FD3, U_L}, {0x1FD6, 0x1FDB, U_L}, {0x1FE0, 0x1FEC, U_L},
    {0x1FF2, 0x1FF4, U_L}, {0x1FF6, 0x1FFC, U_L}, {0x2070, 0x2070, U_N}, {0x2071, 0x2071, U_L}, {0x2074, 0x2079, U_N},
    {0x207F, 0x207F, U_L}, {0x2080, 0x2089, U_N}, {0x2090, 0x209C, U_L}, {0x2102, 0x2102, U_L}, {0x2107, 0x2107, U_L},
    {0x210A, 0x2113, U_L}, {0x2115, 0x2115, U_L}, {0x2119, 0x211D, U_L}, {0x2124, 0x2124, U_L}, {0x2126, 0x2126, U_L},
    {0x2128, 0x2128, U_L}, {0x212A, 0x212D, U_L}, {0x212F, 0x2139, U_L}, {0x213C, 0x213F, U_L}, {0x2145, 0x2149, U_L},
    {0x214E, 0x214E, U_L}, {0x2150, 0x2182, U_N}, {0x2183, 0x2184, U_L}, {0x2185, 0x2189, U_N}, {0x2460, 0x249B, U_N},
    {0x24EA, 0x24FF, U_N}, {0x2776, 0x2793, U_N}, {0x2C00, 0x2CE4, U_L}, {0x2CEB, 0x2CEE, U_L}, {0x2CF2, 0x2CF3, U_L},
    {0x2CFD, 0x2CFD, U_N}, {0x2D00, 0x2D25, U_L}, {0x2D27, 0x2D27, U_L}, {0x2D2D, 0x2D2D, U_L}, {0x2D30, 0x2D67, U_L},
    {0x2D6F, 0x2D6F, U_L}, {0x2D80, 0x2D96, U_L}, {0x2DA0, 0x2DA6, U_L}, {0x2DA8, 0x2DAE, U_L}, {0x2DB0, 0x2DB6, U_L},
    {0x2DB8, 0x2DBE, U_L}, {0x2DC0, 0x2DC6, U_L}, {0x2DC8, 0x2DCE, U_L}, {0x2DD0, 0x2DD6, U_L}, {0x2DD8, 0x2DDE, U_L},
    {0x2E2F, 0x2E2F, U_L}, {0x3005, 0x3006, U_L}, {0x3007, 0x3007, U_N}, {0x3021, 0x3029, U_N}, {0x3031, 0x3035, U_L},
    {0x3038, 0x303A, U_N}, {0x303B, 0x303C, U_L}, {0x3041, 0x3096, U_L}, {0x309D, 0x309F, U_L}, {0x30A1, 0x30FA, U_L},
    {0x30FC, 0x30FF, U_L}, {0x3105, 0x312F, U_L}, {0x3131, 0x318E, U_L}, {0x3192, 0x3195, U_N}, {0x31A0, 0x31BF, U_L},
    {0x31F0, 0x31FF, U_L}, {0x3220, 0x3229, U_N}, {0x3248, 0x324F, U_N}, {0x3251, 0x325F, U_N}, {0x3280, 0x3289, U_N},
    {0x32B1, 0x32BF, U_N}, {0x3400, 0x4DBF, U_L}, {0x4E00, 0xA48C, U_L}, {0xA4D0, 0xA4FD, U_L}, {0xA500, 0xA60C, U_L},
    {0xA610, 0xA61F, U_L}, {0xA620, 0xA629, U_N}, {0xA62A, 0xA62B, U_L}, {0xA640, 0xA66E, U_L}, {0xA67F, 0xA69D, U_L},
    {0xA6A0, 0xA6E5, U_L}, {0xA6E6, 0xA6EF, U_N}, {0xA717, 0xA71F, U_L}, {0xA722, 0xA788, U_L}, {0xA78B, 0xA7CA, U_L},
    {0xA7D0, 0xA7D1, U_L}, {0xA7D3, 0xA7D3, U_L}, {0xA7D5, 0xA7D9, U_L}, {0xA7F2, 0xA801, U_L}, {0xA803, 0xA805, U_L},
    {0xA807, 0xA80A, U_L}, {0xA80C, 0xA822, U_L}, {0xA830, 0xA835, U_N}, {0xA840, 0xA873, U_L}, {0xA882, 0xA8B3, U_L},
    {0xA8D0, 0xA8D9, U_N}, {0xA8F2, 0xA8F7, U_L}, {0xA8FB, 0xA8FB, U_L}, {0xA8FD, 0xA8FE, U_L}, {0xA900, 0xA909, U_N},
    {0xA90A, 0xA925, U_L}, {0xA930, 0xA946, U_L}, {0xA960, 0xA97C, U_L}, {0xA984, 0xA9B2, U_L}, {0xA9CF, 0xA9CF, U_L},
    {0xA9D0, 0xA9D9, U_N}, {0xA9E0, 0xA9E4, U_L}, {0xA9E6, 0xA9EF, U_L}, {0xA9F0, 0xA9F9, U_N}, {0xA9FA, 0xA9FE, U_L},
    {0xAA00, 0xAA28, U_L}, {0xAA40, 0xAA42, U_L}, {0xAA44, 0xAA4B, U_L}, {0xAA50, 0xAA59, U_N}, {0xAA60, 0xAA76, U_L},
    {0xAA7A, 0xAA7A, U_L}, {0xAA7E, 0xAAAF, U_L}, {0xAAB1, 0xAAB1, U_L}, {0xAAB5, 0xAAB6, U_L}, {0xAAB9, 0xAABD, U_L},
    {0xAAC0, 0xAAC0, U_L}, {0xAAC2, 0xAAC2, U_L}, {0xAADB, 0xAADD, U_L}, {0xAAE0, 0xAAEA, U_L}, {0xAAF2, 0xAAF4, U_L},
    {0xAB01, 0xAB06, U_L}, {0xAB09, 0xAB0E, U_L}, {0xAB11, 0xAB16, U_L}, {0xAB20, 0xAB26, U_L}, {0xAB28, 0xAB2E, U_L},
    {0xAB30, 0xAB5A, U_L}, {0xAB5C, 0xAB69, U_L}, {0xAB70, 0xABE2, U_L}, {0xABF0, 0xABF9, U_N}, {0xAC00, 0xD7A3, U_L},
    {0xD7B0, 0xD7C6, U_L}, {0xD7CB, 0xD7FB, U_L}, {0xF900, 0xFA6D, U_L}, {0xFA70, 0xFAD9, U_L}, {0xFB00, 0xFB06, U_L},
    {0xFB13, 0xFB17, U_L}, {0xFB1D, 0xFB1D, U_L}, {0xFB1F, 0xFB28, U_L}, {0xFB2A, 0xFB36, U_L}, {0xFB38, 0xFB3C, U_L},
    {0xFB3E, 0xFB3E, U_L}, {0xFB40, 0xFB41, U_L}, {0xFB43, 0xFB44, U_L}, {0xFB46, 0xFBB1, U_L}, {0xFBD3, 0xFD3D, U_L},
    {0xFD50, 0xFD8F, U_L}, {0xFD92, 0xFDC7, U_L}, {0xFDF0, 0xFDFB, U_L}, {0xFE70, 0xFE74, U_L}, {0xFE76, 0xFEFC, U_L},
    {0xFF10, 0xFF19, U_N}, {0xFF21, 0xFF3A, U_L}, {0xFF41, 0xFF5A, U_L}, {0xFF66, 0xFFBE, U_L}, {0xFFC2, 0xFFC7, U_L},
    {0xFFCA, 0xFFCF, U_L}, {0xFFD2, 0xFFD7, U_L}, {0xFFDA, 0xFFDC, U_L}, {0x10000, 0x1000B, U_L},
    {0x1000D, 0x10026, U_L}, {0x10028, 0x1003A, U_L}, {0x1003C, 0x1003D, U_L}, {0x1003F, 0x1004D, U_L},
    {0x10050, 0x1005D, U_L}, {0x10080, 0x100FA, U_L}, {0x10107, 0x10133, U_N}, {0x10140, 0x10178, U_N},
    {0x1018A, 0x1018B, U_N}, {0x10280, 0x1029C, U_L}, {0x102A0, 0x102D0, U_L}, {0x102E1, 0x102FB, U_N},
    {0x10300, 0x1031F, U_L}, {0x10320, 0x10323, U_N}, {0x1032D, 0x10340, U_L}, {0x10341, 0x10341, U_N},
    {0x10342, 0x10349, U_L}, {0x1034A, 0x1034A, U_N}, {0x10350, 0x10375, U_L}, {0x10380, 0x1039D, U_L},
    {0x103A0, 0x103C3, U_L}, {0x103C8, 0x103CF, U_L}, {0x103D1, 0x103D5, U_N}, {0x10400, 0x1049D, U_L},
    {0x104A0, 0x104A9, U_N}, {0x104B0, 0x104D3, U_L}, {0x104D8, 0x104FB, U_L}, {0x10500, 0x10527, U_L},
    {0x10530, 0x10563, U_L}, {0x10570, 0x1057A, U_L}, {0x1057C, 0x1058A, U_L}, {0x1058C, 0x10592, U_L},
    {0x10594, 0x10595, U_L}, {0x10597, 0x105A1, U_L}, {0x105A3, 0x105B1, U_L}, {0x105B3, 0x105B9, U_L},
    {0x105BB, 0x105BC, U_L}, {0x10600, 0x10736, U_L}, {0x10740, 0x10755, U_L}, {0x10760, 0x10767, U_L},
    {0x10780, 0x10785, U_L}, {0x10787, 0x107B0, U_L}, {0x107B2, 0x107BA, U_L}, {0x10800, 0x10805, U_L},
    {0x10808, 0x10808, U_L}, {0x1080A, 0x10835, U_L}, {0x10837, 0x10838, U_L}, {0x1083C, 0x1083C, U_L},
    {0x1083F, 0x10855, U_L}, {0x10858, 0x1085F, U_N}, {0x10860, 0x10876, U_L}, {0x10879, 0x1087F, U_N},
    {0x10880, 0x1089E, U_L}, {0x108A7, 0x108AF, U_N}, {0x108E0, 0x108F2, U_L}, {0x108F4, 0x108F5, U_L},
    {0x108FB, 0x108FF, U_N}, {0x10900, 0x10915, U_L}, {0x10916, 0x1091B, U_N}, {0x10920, 0x10939, U_L},
    {0x10980, 0x109B7, U_L}, {0x109BC, 0x109BD, U_N}, {0x109BE, 0x109BF, U_L}, {0x109C0, 0x109CF, U_N},
    {0x109D2, 0x109FF, U_N}, {0x10A00, 0x10A00, U_L}, {0x10A10, 0x10A13, U_L}, {0x10A15, 0x10A17, U_L},
    {0x10A19, 0x10A35, U_L}, {0x10A40, 0x10A48, U_N}, {0x10A60, 0x10A7C, U_L}, {0x10A7D, 0x10A7E, U_N},
    {0x10A80, 0x10A9C, U_L}, {0x10A9D, 0x10A9F, U_N}, {0x10AC0, 0x10AC7, U_L}, {0x10AC9, 0x10AE4, U_L},
    {0x10AEB, 0x10AEF, U_N}, {0x10B00, 0x10B35, U_L}, {0x10B40, 0x10B55, U_L}, {0x10B58, 0x10B5F, U_N},
    {0x10B60, 0x10B72, U_L}, {0x10B78, 0x10B7F, U_N}, {0x10B80, 0x10B91, U_L}, {0x10BA9, 0x10BAF, U_N},
    {0x10C00, 0x10C48, U_L}, {0x10C80, 0x10CB2, U_L}, {0x10CC0, 0x10CF2, U_L}, {0x10CFA, 0x10CFF, U_N},
    {0x10D00, 0x10D23, U_L}, {0x10D30, 0x10D39, U_N}, {0x10E60, 0x10E7E, U_N}, {0x10E80, 0x10EA9, U_L},
    {0x10EB0, 0x10EB1, U_L}, {0x10F00, 0x10F1C, U_L}, {0x10F1D, 0x10F26, U_N}, {0x10F27, 0x10F27, U_L},
    {0x10F30, 0x10F45, U_L}, {0x10F51, 0x10F54, U_N}, {0x10F70, 0x10F81, U_L}, {0x10FB0, 0x10FC4, U_L},
    {0x10FC5, 0x10FCB, U_N}, {0x10FE0, 0x10FF6, U_L}, {0x11003, 0x11037, U_L}, {0x11052, 0x1106F, U_N},
    {0x11071, 0x11072, U_L}, {0x11075, 0x11075, U_L}, {0x11083, 0x110AF, U_L}, {0x110D0, 0x110E8, U_L},
    {0x110F0, 0x110F9, U_N}, {0x11103, 0x11126, U_L}, {0x11136, 0x1113F, U_N}, {0x11144, 0x11144, U_L},
    {0x11147, 0x11147, U_L}, {0x11150, 0x11172, U_L}, {0x11176, 0x11176, U_L}, {0x11183, 0x111B2, U_L},
    {0x111C1, 0x111C4, U_L}, {0x111D0, 0x111D9, U_N}, {0x111DA, 0x111DA, U_L}, {0x111DC, 0x111DC, U_L},
    {0x111E1, 0x111F4, U_N}, {0x11200, 0x11211, U_L}, {0x11213, 0x1122B, U_L}, {0x11280, 0x11286, U_L},
    {0x11288, 0x11288, U_L}, {0x1128A, 0x1128D, U_L}, {0x1128F, 0x1129D, U_L}, {0x1129F, 0x112A8, U_L},
    {0x112B0, 0x112DE, U_L}, {0x112F0, 0x112F9, U_N}, {0x11305, 0x1130C, U_L}, {0x1130F, 0x11310, U_L},
    {0x11313, 0x11328, U_L}, {0x1132A, 0x11330, U_L}, {0x11332, 0x11333, U_L}, {0x11335, 0x11339, U_L},
    {0x1133D, 0x1133D, U_L}, {0x11350, 0x11350, U_L}, {0x1135D, 0x11361, U_L}, {0x11400, 0x11434, U_L},
    {0x11447, 0x1144A, U_L}, {0x11450, 0x11459, U_N}, {0x1145F, 0x11461, U_L}, {0x11480, 0x114AF, U_L},
    {0x114C4, 0x114C5, U_L}, {0x114C7, 0x114C7, U_L}, {0x114D0, 0x114D9, U_N}, {0x11580, 0x115AE, U_L},
    {0x115D8, 0x115DB, U_L}, {0x11600, 0x1162F, U_L}, {0x11644, 0x11644, U_L}, {0x11650, 0x11659, U_N},
    {0x11680, 0x116AA, U_L}, {0x116B8, 0x116B8, U_L}, {0x116C0, 0x116C9, U_N}, {0x11700, 0x1171A, U_L},
    {0x11730, 0x1173B, U_N}, {0x11740, 0x11746, U_L}, {0x11800, 0x1182B, U_L}, {0x118A0, 0x118DF, U_L},
    {0x118E0, 0x118F2, U_N}, {0x118FF, 0x11906, U_L}, {0x11909, 0x11909, U_L}, {0x1190C, 0x11913, U_L},
    {0x11915, 0x11916, U_L}, {0x11918, 0x1192F, U_L}, {0x1193F, 0x1193F, U_L}, {0x11941, 0x11941, U_L},
    {0x11950, 0x11959, U_N}, {0x119A0, 0x119A7, U_L}, {0x119AA, 0x119D0, U_L}, {0x119E1, 0x119E1, U_L},
    {0x119E3, 0x119E3, U_L}, {0x11A00, 0x11A00, U_L}, {0x11A0B, 0x11A32, U_L}, {0x11A3A, 0x11A3A, U_L},
    {0x11A50, 0x11A50, U_L}, {0x11A5C, 0x11A89, U_L}, {0x11A9D, 0x11A9D, U_L}, {0x11AB0, 0x11AF8, U_L},
    {0x11C00, 0x11C08, U_L}, {0x11C0A, 0x11C2E, U_L}, {0x11C40, 0x11C40, U_L}, {0x11C50, 0x11C6C, U_N},
    {0x11C72, 0x11C8F, U_L}, {0x11D00, 0x11D06, U_L}, {0x11D08, 0x11D09, U_L}, {0x11D0B, 0x11D30, U_L},
    {0x11D46, 0x11D46, U_L}, {0x11D50, 0x11D59, U_N}, {0x11D60, 0x11D65, U_L}, {0x11D67, 0x11D68, U_L},
    {0x11D6A, 0x11D89, U_L}, {0x11D98, 0x11D98, U_L}, {0x11DA0, 0x11DA9, U_N}, {0x11EE0, 0x11EF2, U_L},
    {0x11FB0, 0x11FB0, U_L}, {0x11FC0, 0x11FD4, U_N}, {0x12000, 0x12399, U_L}, {0x12400, 0x1246E, U_N},
    {0x12480, 0x12543, U_L}, {0x12F90, 0x12FF0, U_L}, {0x13000, 0x1342E, U_L}, {0x14400, 0x14646, U_L},
    {0x16800, 0x16A38, U_L}, {0x16A40, 0x16A5E, U_L}, {0x16A60, 0x16A69, U_N}, {0x16A70, 0x16ABE, U_L},
    {0x16AC0, 0x16AC9, U_N}, {0x16AD0, 0x16AED, U_L}, {0x16B00, 0x16B2F, U_L}, {0x16B40, 0x16B43, U_L},
    {0x16B50, 0x16B59, U_N}, {0x16B5B, 0x16B61, U_N}, {0x16B63, 0x16B77, U_L}, {0x16B7D, 0x16B8F, U_L},
    {0x16E40, 0x16E7F, U_L}, {0x16E80, 0x16E96, U_N}, {0x16F00, 0x16F4A, U_L}, {0x16F50, 0x16F50, U_L},
    {0x16F93, 0x16F9F, U_L}, {0x16FE0, 0x16FE1, U_L}, {0x16FE3, 0x16FE3, U_L}, {0x17000, 0x187F7, U_L},
    {0x18800, 0x18CD5, U_L}, {0x18D00, 0x18D08, U_L}, {0x1AFF0, 0x1AFF3, U_L}, {0x1AFF5, 0x1AFFB, U_L},
    {0x1AFFD, 0x1AFFE, U_L}, {0x1B000, 0x1B122, U_L}, {0x1B150, 0x1B152, U_L}, {0x1B164, 0x1B167, U_L},
    {0x1B170, 0x1B2FB, U_L}, {0x1BC00, 0x1BC6A, U_L}, {0x1BC70, 0x1BC7C, U_L}, {0x1BC80, 0x1BC88, U_L},
    {0x1BC90, 0x1BC99, U_L}, {0x1D2E0, 0x1D2F3, U_N}, {0x1D360, 0x1D378, U_N}, {0x1D400, 0x1D454, U_L},
    {0x1D456, 0x1D49C, U_L}, {0x1D49E, 0x1D49F, U_L}, {0x1D4A2, 0x1D4A2, U_L}, {0x1D4A5, 0x1D4A6, U_L},
    {0x1D4A9, 0x1D4AC, U_L}, {0x1D4AE, 0x1D4B9, U_L}, {0x1D4BB, 0x1D4BB, U_L}, {0x1D4BD, 0x1D4C3, U_L},
    {0x1D4C5, 0x1D505, U_L}, {0x1D507, 0x1D50A, U_L}, {0x1D50D, 0x1D514, U_L}, {0x1D516, 0x1D51C, U_L},
    {0x1D51E, 0x1D539, U_L}, {0x1D53B, 0x1D53E, U_L}, {0x1D540, 0x1D544, U_L}, {0x1D546, 0x1D546, U_L},
    {0x1D54A, 0x1D550, U_L}, {0x1D552, 0x1D6A5, U_L}, {0x1D6A8, 0x1D6C0, U_L}, {0x1D6C2, 0x1D6DA, U_L},
    {0x1D6DC, 0x1D6FA, U_L}, {0x1D6FC, 0x1D714, U_L}, {0x1D716, 0x1D734, U_L}, {0x1D736, 0x1D74E, U_L},
    {0x1D750, 0x1D76E, U_L}, {0x1D770, 0x1D788, U_L}, {0x1D78A, 0x1D7A8, U_L}, {0x1D7AA, 0x1D7C2, U_L},
    {0x1D7C4, 0x1D7CB, U_L}, {0x1D7CE, 0x1D7FF, U_N}, {0x1DF00, 0x1DF1E, U_L}, {0x1E100, 0x1E12C, U_L},
    {0x1E137, 0x1E13D, U_L}, {0x1E140, 0x1E149, U_N}, {0x1E14E, 0x1E14E, U_L}, {0x1E290, 0x1E2AD, U_L},
    {0x1E2C0, 0x1E2EB, U_L}, {0x1E2F0, 0x1E2F9, U_N}, {0x1E7E0, 0x1E7E6, U_L}, {0x1E7E8, 0x1E7EB, U_L},
    {0x1E7ED, 0x1E7EE, U_L}, {0x1E7F0, 0x1E7FE, U_L}, {0x1E800, 0x1E8C4, U_L}, {0x1E8C7, 0x1E8CF, U_N},
    {0x1E900, 0x1E943, U_L}, {0x1E94B, 0x1E94B, U_L}, {0x1E950, 0x1E959, U_N}, {0x1EC71, 0x1ECAB, U_N},
    {0x1ECAD, 0x1ECAF, U_N}, {0x1ECB1, 0x1ECB4, U_N}, {0x1ED01, 0x1ED2D, U_N}, {0x1ED2F, 0x1ED3D, U_N},
    {0x1EE00, 0x1EE03, U_L}, {0x1EE05, 0x1EE1F, U_L}, {0x1EE21, 0x1EE22, U_L}, {0x1EE24, 0x1EE24, U_L},
    {0x1EE27, 0x1EE27, U_L}, {0x1EE29, 0x1EE32, U_L}, {0x1EE34, 0x1EE37, U_L}, {0x1EE39, 0x1EE39, U_L},
    {0x1EE3B, 0x1EE3B, U_L}, {0x1EE42, 0x1EE42, U_L}, {0x1EE47, 0x1EE47, U_L}, {0x1EE49, 0x1EE49, U_L},
    {0x1EE4B, 0x1EE4B, U_L}, {0x1EE4D, 0x1EE4F, U_L}, {0x1EE51, 0x1EE52, U_L}, {0x1EE54, 0x1EE54, U_L},
    {0x1EE57, 0x1EE57, U_L}, {0x1EE59, 0x1EE59, U_L}, {0x1EE5B, 0x1EE5B, U_L}, {0x1EE5D, 0x1EE5D, U_L},
    {0x1EE5F, 0x1EE5F, U_L}, {0x1EE61, 0x1EE62, U_L}, {0x1EE64, 0x1EE64, U_L}, {0x1EE67, 0x1EE6A, U_L},
    {0x1EE6C, 0x1EE72, U_L}, {0x1EE74, 0x1EE77, U_L}, {0x1EE79, 0x1EE7C, U_L}, {0x1EE7E, 0x1EE7E, U_L},
    {0x1EE80, 0x1EE89, U_L}, {0x1EE8B, 0x1EE9B, U_L}, {0x1EEA1, 0x1EEA3, U_L}, {0x1EEA5, 0x1EEA9, U_L},
    {0x1EEAB, 0x1EEBB, U_L}, {0x1F100, 0x1F10C, U_N}, {0x1FBF0, 0x1FBF9, U_N}, {0x20000, 0x2A6DF, U_L},
    {0x2A700, 0x2B738, U_L}, {0x2B740, 0x2B81D, U_L}, {0x2B820, 0x2CEA1, U_L}, {0x2CEB0, 0x2EBE0, U_L},
    {0x2F800, 0x2FA1D, U_L}, {0x30000, 0x3134A, U_L},
};
#define K_N_RANGES (sizeof k_ranges / sizeof k_ranges[0])

static int unicode_class(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
            return U_L;
        return cp >= '0' && cp <= '9' ? U_N : 0;
    }
    size_t lo = 0, hi = K_N_RANGES;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < k_ranges[mid].lo)
            hi = mid;
        else if (cp > k_ranges[mid].hi)
            lo = mid + 1;
        else
            return k_ranges[mid].cls;
    }
    return 0;
}

int qk_unicode_is_letter(uint32_t cp) { return unicode_class(cp) == U_L; }
int qk_unicode_is_number(uint32_t cp) { return unicode_class(cp) == U_N; }

int qk_unicode_is_space(uint32_t cp)
{
    /* the White_Space property (PropList.txt) */
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d);
    switch (cp) {
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

/* -------------------------------------------------------- UTF-8 reading */

/* One code point at s[i] (i < n), read as llama.cpp's unicode_cpt_from_utf8
 * reads it (no check for overlong forms or surrogates). An invalid sequence
 * reads as U+FFFD and consumes one byte; so does a 4-byte form above
 * U+10FFFF (llama.cpp throws out of llama_tokenize on those). */
static size_t cp_read(const uint8_t *s, size_t n, size_t i, uint32_t *cp)
{
    uint8_t c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (!(c & 0x40))
        goto bad;
    if (!(c & 0x20)) {
        if (i + 1 >= n || (s[i + 1] & 0xc0) != 0x80)
            goto bad;
        *cp = ((uint32_t)(c & 0x1f) << 6) | (s[i + 1] & 0x3f);
        return 2;
    }
    if (!(c & 0x10)) {
        if (i + 2 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80)
            goto bad;
        *cp = ((uint32_t)(c & 0x0f) << 12) | ((uint32_t)(s[i + 1] & 0x3f) << 6) | (s[i + 2] & 0x3f);
        return 3;
    }
    if (!(c & 0x08)) {
        if (i + 3 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80 || (s[i + 3] & 0xc0) != 0x80)
            goto bad;
        uint32_t v = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3f) << 12) |
                     ((uint32_t)(s[i + 2] & 0x3f) << 6) | (s[i + 3] & 0x3f);
        if (v > 0x10ffff)
            goto bad;
        *cp = v;
        return 4;
    }
bad:
    *cp = 0xfffd;
    return 1;
}

static size_t cp_write(uint32_t cp, uint8_t *o)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xc0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* ------------------------------------------------------- pre-tokenizer */

enum { F_L = 1, F_N = 2, F_S = 4, F_IN = 8 }; /* F_IN: inside the fragment (llama.cpp: flags != 0) */

typedef struct cpt {
    uint32_t cp;
    size_t len;   /* bytes; 0 past the end */
    unsigned f;   /* F_* */
} cpt;

static cpt cpt_at(const uint8_t *s, size_t n, size_t pos)
{
    cpt r = {0xffffffffu, 0, 0};
    if (pos >= n)
        return r;
    r.len = cp_read(s, n, pos, &r.cp);
    int cls = unicode_class(r.cp);
    r.f = F_IN | (cls == U_L ? F_L : 0) | (cls == U_N ? F_N : 0) | (qk_unicode_is_space(r.cp) ? F_S : 0);
    return r;
}

/* End of the run of code points from p whose flags contain `mask`. */
static size_t run_with(const uint8_t *s, size_t n, size_t p, unsigned mask)
{
    for (;;) {
        cpt c = cpt_at(s, n, p);
        if (!(c.f & mask))
            return p;
        p += c.len;
    }
}

/* End of the run from p of code points inside the fragment that are not
 * letters, numbers or spaces: [^\s\p{L}\p{N}]+ */
static size_t run_other(const uint8_t *s, size_t n, size_t p)
{
    for (;;) {
        cpt c = cpt_at(s, n, p);
        if (!(c.f & F_IN) || (c.f & (F_L | F_N | F_S)))
            return p;
        p += c.len;
    }
}

static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Each branch mirrors one alternative of the regex, in order; the word
 * depends only on the text from pos on, so words can be produced one at a
 * time. */
size_t qk_pretok_word(int pre, const char *str, size_t n, size_t pos)
{
    const uint8_t *s = (const uint8_t *)str;
    const int l3 = pre == QK_PRE_LLAMA3;
    cpt c0 = cpt_at(s, n, pos);
    size_t p1 = pos + c0.len;
    cpt c1 = cpt_at(s, n, p1);

    /* 's|'t|'re|'ve|'m|'ll|'d (case-insensitive for Llama 3) */
    if (c0.cp == '\'' && p1 < n) {
        uint32_t a = l3 ? ascii_lower(c1.cp) : c1.cp;
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return p1 + c1.len - pos;
        size_t p2 = p1 + c1.len;
        if (p2 < n) {
            cpt c2 = cpt_at(s, n, p2);
            uint32_t b = l3 ? ascii_lower(c2.cp) : c2.cp;
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return p2 + c2.len - pos;
        }
    }

    if (!l3) {
        /* ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ */
        unsigned f2 = c0.cp == ' ' ? c1.f : c0.f;
        size_t p = c0.cp == ' ' ? p1 : pos;
        if (f2 & F_L)
            return run_with(s, n, p, F_L) - pos;
        if (f2 & F_N)
            return run_with(s, n, p, F_N) - pos;
        if ((f2 & F_IN) && !(f2 & (F_L | F_N | F_S)))
            return run_other(s, n, p) - pos;
    } else {
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (!(c0.cp == '\r' || c0.cp == '\n' || (c0.f & F_N)) && ((c0.f & F_L) || (c1.f & F_L)))
            return run_with(s, n, p1, F_L) - pos;
        /* \p{N}{1,3} */
        if (c0.f & F_N) {
            size_t p = pos;
            for (int k = 0; k < 3; k++) {
                cpt c = cpt_at(s, n, p);
                if (!(c.f & F_N))
                    break;
                p += c.len;
            }
            return p - pos;
        }
        /* ?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the first code point's
         * flags for "inside", so a lone trailing space takes this branch) */
        unsigned f2 = c0.cp == ' ' ? c1.f : c0.f;
        if (!(f2 & (F_L | F_N | F_S))) {
            size_t p = c0.cp == ' ' ? p1 : pos;
            if (f2 & F_IN)
                p = run_other(s, n, p);
            for (;;) {
                cpt c = cpt_at(s, n, p);
                if (c.cp != '\r' && c.cp != '\n')
                    break;
                p += c.len;
            }
            return p - pos;
        }
    }

    /* \s*[\r\n]+ (Llama 3) | \s+(?!\S) | \s+ */
    size_t q = pos, last_start = pos, last_rn = 0;
    int64_t nw = 0;
    for (;;) {
        cpt c = cpt_at(s, n, q);
        if (!(c.f & F_S))
            break;
        if (c.cp == '\r' || c.cp == '\n')
            last_rn = q + c.len;
        last_start = q;
        q += c.len;
        nw++;
    }
    if (l3 && last_rn)
        return last_rn - pos;
    if (nw > 1 && q < n)
        return last_start - pos; /* leave the last space to the next word */
    if (nw > 0)
        return q - pos;
    return c0.len; /* no alternative matches: one code point */
}

/* -------------------------------------------------- byte-level alphabet */

/* GPT-2's bytes_to_unicode: '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF
 * stand for themselves; the other 68 bytes map to U+0100.. in byte order. */
static uint32_t byte_to_cp(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)
        return b;
    if (b <= 0x20)
        return 0x100u + b;
    if (b <= 0xa0)
        return 0x100u + 33 + (b - 0x7fu);
    return 0x100u + 67; /* 0xad */
}

static int cp_to_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) || (cp >= 0xae && cp <= 0xff))
        return (int)cp;
    if (cp < 0x100 || cp >= 0x100 + 68)
        return -1;
    uint32_t k = cp - 0x100;
    if (k < 33)
        return (int)k;
    if (k < 67)
        return (int)(0x7f + k - 33);
    return 0xad;
}

size_t qk_bpe_decode_text(const char *text, size_t len, char *out)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = cp_read(s, len, i, &cp);
        int b = cp_to_byte(cp);
        if (b >= 0) /* a character of the alphabet (an invalid byte reads as U+FFFD, not one) */
            out[o++] = (char)b;
        else
            memcpy(out + o, text + i, k), o += k;
        i += k;
    }
    return o;
}

/* ------------------------------------------------------------ merge map */

static uint64_t merge_hash(const char *lr, size_t llen, size_t rlen)
{
    /* seeded: the merges come from files (see qk_hash64_table) */
    return qk_hash64_table(lr, llen + rlen) ^ ((uint64_t)llen * 0x9e3779b97f4a7c15ull);
}

/* Rank of the merge (left, right) where left is [lr, lr+llen) and right
 * follows it directly; -1 when there is none. */
static int32_t merge_rank(const qk_tokenizer *t, const char *lr, size_t llen, size_t rlen)
{
    const qk_merge_map *m = &t->merges;
    if (!m->slots)
        return -1;
    const qk_str *ms = t->v->merges;
    for (uint64_t pos = merge_hash(lr, llen, rlen) & m->mask;; pos = (pos + 1) & m->mask) {
        int32_t i = m->slots[pos];
        if (i < 0)
            return -1;
        if (m->split[i] == llen && ms[i].len == llen + 1 + rlen && !memcmp(ms[i].s, lr, llen) &&
            !memcmp(ms[i].s + llen + 1, lr + llen, rlen))
            return i;
    }
}

int qk_bpe_init(qk_tokenizer *t)
{
    const qk_vocab *v = t->v;
    const char *pre = v->pre ? v->pre : "default";
    /* llama.cpp's LLAMA3 pre type (which also sets ignore_merges), then the
     * DBRX and SMAUG types, which share its regex but not ignore_merges */
    static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                         "midm-2.0", "lfm2", "jina-v5-nano", NULL};
    static const char *const llama3_regex_only[] = {"dbrx", "smaug-bpe", NULL};
    t->pre = QK_PRE_GPT2;
    for (int i = 0; llama3[i]; i++)
        if (!strcmp(pre, llama3[i]))
            t->pre = QK_PRE_LLAMA3, t->ignore_merges = 1;
    for (int i = 0; llama3_regex_only[i]; i++)
        if (!strcmp(pre, llama3_regex_only[i]))
            t->pre = QK_PRE_LLAMA3;

    int64_t nm = v->n_merges;
    if (nm <= 0)
        return 0;
    if (nm > INT32_MAX)
        return qk_error(QK_ELIMIT, "%" PRId64 " merges, more than the tokenizer's limit of %d", nm, INT32_MAX);
    uint64_t cap = 16;
    while (cap < (uint64_t)nm * 2)
        cap *= 2;
    qk_merge_map *m = &t->merges;
    m->mask = cap - 1;
    m->slots = malloc(cap * sizeof *m->slots);
    m->split = malloc((size_t)nm * sizeof *m->split);
    char *tmp = NULL;
    size_t tmp_cap = 0;
    if (!m->slots || !m->split)
        goto nomem;
    memset(m->slots, 0xff, cap * sizeof *m->slots);
    for (int64_t i = 0; i < nm; i++) {
        const qk_str *ms = &v->merges[i];
        /* llama.cpp splits at the first space after the first byte */
        const char *sp = ms->len > 1 ? memchr(ms->s + 1, ' ', (size_t)ms->len - 1) : NULL;
        if (!sp || ms->len > UINT32_MAX) {
            m->split[i] = UINT32_MAX;
            continue;
        }
        size_t llen = (size_t)(sp - ms->s), rlen = (size_t)ms->len - llen - 1;
        m->split[i] = (uint32_t)llen;
        if (llen + rlen > tmp_cap) {
            free(tmp);
            tmp_cap = (llen + rlen) * 2;
            if (!(tmp = malloc(tmp_cap)))
                goto nomem;
        }
        memcpy(tmp, ms->s, llen);
        memcpy(tmp + llen, sp + 1, rlen);
        if (merge_rank(t, tmp, llen, rlen) >= 0)
            continue; /* a repeated pair keeps its first (lowest) rank, as llama.cpp's emplace does */
        uint64_t pos = merge_hash(tmp, llen, rlen) & m->mask;
        while (m->slots[pos] >= 0)
            pos = (pos + 1) & m->mask;
        m->slots[pos] = (int32_t)i;
    }
    free(tmp);
    return 0;
nomem:
    free(tmp);
    return qk_error(QK_ENOMEM, "out of memory for the merge table of %" PRId64 " merges", nm);
}

void qk_bpe_free(qk_tokenizer *t)
{
    free(t->merges.slots);
    free(t->merges.split);
    t->merges.slots = NULL;
    t->merges.split = NULL;
}

/* --------------------------------------------------------------- merging */

typedef struct bsym {
    int32_t prev, next;
    uint32_t off, n; /* bytes of the encoded word */
} bsym;

typedef struct bpair {
    int32_t rank, left, right;
    uint32_t size;
} bpair;

typedef struct bpe_work {
    char *enc;
    size_t enc_cap;
    bsym *sym;
    size_t sym_cap;
    bpair *heap;
    size_t heap_n, heap_cap;
} bpe_work;

static int pair_before(const bpair *a, const bpair *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(bpe_work *w, bpair p)
{
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? w->heap_cap * 2 : 64;
        bpair *h = realloc(w->heap, cap * sizeof *h);
        if (!h)
            return qk_error(QK_ENOMEM, "out of memory in the BPE merge heap");
        w->heap = h;
        w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = p;
    return 0;
}

static bpair heap_pop(bpe_work *w)
{
    bpair top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && pair_before(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!pair_before(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = last;
    return top;
}

static int add_pair(const qk_tokenizer *t, bpe_work *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return 0;
    int32_t rank = merge_rank(t, w->enc + w->sym[l].off, w->sym[l].n, w->sym[r].n);
    if (rank < 0)
        return 0;
    bpair p = {rank, l, r, w->sym[l].n + w->sym[r].n};
    return heap_push(w, p);
}

/* Encode, merge and emit one pre-tokenizer word [s, s+n). */
static int bpe_word(const qk_tokenizer *t, bpe_work *w, const uint8_t *s, size_t n, qk_idvec *out)
{
    const qk_vocab *v = t->v;
    /* each input byte becomes at most 3 UTF-8 bytes (U+FFFD), each of those
     * at most 2 bytes of the alphabet */
    if (n > INT32_MAX / 3)
        return qk_error(QK_ELIMIT, "a pre-tokenizer word of %zu bytes is longer than the limit of %d", n,
                        INT32_MAX / 3);
    if (n * 6 > w->enc_cap) {
        free(w->enc);
        w->enc_cap = n * 6 + 64;
        if (!(w->enc = malloc(w->enc_cap)))
            return qk_error(QK_ENOMEM, "out of memory for a %zu-byte word", n);
    }
    if (n * 3 > w->sym_cap) {
        free(w->sym);
        w->sym_cap = n * 3 + 16;
        if (!(w->sym = malloc(w->sym_cap * sizeof *w->sym)))
            return qk_error(QK_ENOMEM, "out of memory for a %zu-byte word", n);
    }
    size_t e = 0;
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        uint8_t u[4];
        i += cp_read(s, n, i, &cp);
        size_t k = cp_write(cp, u);
        for (size_t j = 0; j < k; j++) {
            uint8_t b[2];
            size_t bl = cp_write(byte_to_cp(u[j]), b);
            memcpy(w->enc + e, b, bl);
            w->sym[ns] = (bsym){ns - 1, ns + 1, (uint32_t)e, (uint32_t)bl};
            e += bl;
            ns++;
        }
    }
    if (ns == 0)
        return 0;
    w->sym[ns - 1].next = -1;

    int32_t whole = t->ignore_merges ? qk_vocab_find(v, w->enc, e) : -1;
    if (whole >= 0)
        return qk_idvec_push(out, whole);

    int rc;
    w->heap_n = 0;
    for (int32_t i = 1; i < ns; i++)
        if ((rc = add_pair(t, w, i - 1, i)))
            return rc;
    while (w->heap_n) {
        bpair p = heap_pop(w);
        bsym *L = &w->sym[p.left], *R = &w->sym[p.right];
        if (L->n == 0 || R->n == 0 || L->n + R->n != p.size)
            continue; /* stale: one side merged since */
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0)
            w->sym[R->next].prev = p.left;
        if ((rc = add_pair(t, w, L->prev, p.left)) || (rc = add_pair(t, w, p.left, L->next)))
            return rc;
    }
    for (int32_t i = 0; i != -1; i = w->sym[i].next) {
        const char *txt = w->enc + w->sym[i].off;
        int32_t id = qk_vocab_find(v, txt, w->sym[i].n);
        if (id >= 0) {
            if ((rc = qk_idvec_push(out, id)))
                return rc;
            continue;
        }
        for (uint32_t j = 0; j < w->sym[i].n; j++) {
            id = qk_vocab_find(v, txt + j, 1);
            if (id >= 0 && (rc = qk_idvec_push(out, id)))
                return rc;
        }
    }
    return 0;
}

int qk_bpe_tokenize(const qk_tokenizer *t, const char *text, size_t len, qk_idvec *out)
{
    bpe_work w = {0};
    int rc = 0;
    for (size_t pos = 0; pos < len;) {
        size_t wl = qk_pretok_word(t->pre, text, len, pos);
        if ((rc = bpe_word(t, &w, (const uint8_t *)text + pos, wl, out)))
            break;
        pos += wl;
    }
    free(w.enc);
    free(w.sym);
    free(w.heap);
    return rc;
}
