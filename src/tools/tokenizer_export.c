/* tokenizer_export.c - `rotor-model export-tokenizer` (being written). */
#include "tokenizer_export.h"
