/* tokenizer_export.h - `rotor-model export-tokenizer` (being written). */
#ifndef ROTOR_TOKENIZER_EXPORT_H
#define ROTOR_TOKENIZER_EXPORT_H
#endif
