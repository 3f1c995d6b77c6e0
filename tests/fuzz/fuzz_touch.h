/*
 * fuzz_touch.h - what the fuzz targets share: reading every byte a parser
 * hands out into a sink the compiler cannot drop, so an unchecked length
 * shows up under AddressSanitizer.
 */
#ifndef ROTOR_FUZZ_TOUCH_H
#define ROTOR_FUZZ_TOUCH_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A sink the compiler cannot drop. */
static volatile uint64_t fuzz_sink;

static inline uint64_t touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) h = h * 31 + b[i];
    return h;
}

#endif
