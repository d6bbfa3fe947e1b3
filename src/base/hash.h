/* Hashes for fingerprints (not for security): 64-bit FNV-1a, and zlib's
 * CRC-32 over buffers of any length. */
#ifndef CAST_BASE_HASH_H
#define CAST_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CAST_FNV1A64_INIT 0xcbf29ce484222325ull

/* FNV-1a, 64 bits: h = (h ^ byte) * 0x100000001b3 for each byte; start from CAST_FNV1A64_INIT. */
uint64_t cast_fnv1a64(uint64_t h, const void *data, size_t n);
/* FNV-1a of v's 8 bytes, little-endian. */
uint64_t cast_fnv1a64_u64(uint64_t h, uint64_t v);
/* zlib's crc32 (the gzip/PNG CRC), chunked so n may exceed 4 GiB. */
uint32_t cast_crc32(const void *data, size_t n);
/* The CRC continued over n more bytes: cast_crc32_update(cast_crc32(a), b) is the CRC of a then b. */
uint32_t cast_crc32_update(uint32_t crc, const void *data, size_t n);

#endif
