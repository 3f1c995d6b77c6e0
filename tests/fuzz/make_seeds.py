#!/usr/bin/env python3
"""make_seeds.py - (re)create the seed corpus of the GGUF reader fuzzer.

    python3 tests/fuzz/make_seeds.py [--rotor-model build/bin/rotor-model] [--out build/fuzz/seeds]

Writes small valid GGUFs (v3 and v2; from rotor-model when given, and built
here byte by byte: every metadata type, every tensor type, alignments) and
hand-broken ones named after what is wrong with them (bad magic, truncations,
huge counts, string past the end, absurd dims, unknown types, data past the
end, misaligned offsets, arrays of arrays...). Standard library only.
"""
import argparse
import os
import struct
import subprocess
import tempfile

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
# ggml type id -> (block size, bytes per block)
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
         9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
         15: (256, 292), 30: (1, 2)}


def gstr(x):
    b = x if isinstance(x, bytes) else x.encode()
    return struct.pack('<Q', len(b)) + b


def kv(key, t, payload):
    return gstr(key) + struct.pack('<I', t) + payload


def kv_u32(key, v):
    return kv(key, T_U32, struct.pack('<I', v))


def kv_str(key, v):
    return kv(key, T_STR, gstr(v))


def kv_arr(key, et, items, fmt=None):
    body = struct.pack('<IQ', et, len(items))
    body += b''.join(gstr(i) for i in items) if et == T_STR else struct.pack('<' + fmt * len(items), *items)
    return kv(key, T_ARR, body)


def tinfo(name, dims, t, off):
    return gstr(name) + struct.pack('<I', len(dims)) + struct.pack('<%dQ' % len(dims), *dims) + \
        struct.pack('<IQ', t, off)


def nbytes(dims, t):
    bs, ts = TYPES[t]
    n = 1
    for d in dims:
        n *= d
    return n // bs * ts


def gguf(kvs, tensors, version=3, align=32, n_kv=None, n_t=None, pad=True, data=None):
    """tensors: list of (name, dims, type); offsets assigned, data patterned."""
    infos, blob, off = b'', b'', 0
    for name, dims, t in tensors:
        infos += tinfo(name, dims, t, off)
        nb = nbytes(dims, t)
        blob += bytes((i * 7 + 1) & 0x3f for i in range(nb))  # small values: finite f16/f32
        blob += b'\0' * ((-len(blob)) % align)
        off = len(blob)
    head = b'GGUF' + struct.pack('<IQQ', version, len(tensors) if n_t is None else n_t,
                                 len(kvs) if n_kv is None else n_kv) + b''.join(kvs) + infos
    if pad:
        head += b'\0' * ((-len(head)) % align)
    return head + (blob if data is None else data)


def valid_seeds():
    out = {}
    every_kv = [kv('k.u8', T_U8, b'\x07'), kv('k.i8', T_I8, b'\xf9'), kv('k.u16', T_U16, b'\x34\x12'),
                kv('k.i16', T_I16, b'\xfe\xff'), kv_u32('k.u32', 0xdeadbeef), kv('k.i32', T_I32, struct.pack('<i', -5)),
                kv('k.f32', T_F32, struct.pack('<f', 1.5)), kv('k.bool', T_BOOL, b'\x01'),
                kv_str('k.str', 'h\u00e9llo \u2581world'), kv('k.u64', T_U64, struct.pack('<Q', 2**64 - 1)),
                kv('k.i64', T_I64, struct.pack('<q', -2**63)), kv('k.f64', T_F64, struct.pack('<d', -0.25)),
                kv_arr('k.arr.str', T_STR, ['a', '', 'ccc', '\u2581x']), kv_arr('k.arr.i32', T_I32, [1, -2, 3], 'i'),
                kv_arr('k.arr.f32', T_F32, [0.5, -1.0], 'f'), kv_arr('k.arr.u8', T_U8, [1, 2, 3], 'B'),
                kv_arr('k.arr.bool', T_BOOL, [1, 0], 'B'), kv_arr('k.arr.f64', T_F64, [1e300], 'd'),
                kv_arr('k.arr.empty', T_I64, [], 'q'), kv_str('k.str.empty', '')]
    out['valid_every_kv_type.gguf'] = gguf(every_kv, [])
    out['valid_empty.gguf'] = gguf([], [])
    out['valid_empty_v2.gguf'] = gguf([], [], version=2)
    for t in TYPES:
        bs = TYPES[t][0]
        out['valid_tensor_type_%d.gguf' % t] = gguf([kv_str('general.architecture', 'llama')],
                                                    [('w', [bs, 2], t), ('v', [bs], t)])
    out['valid_4d.gguf'] = gguf([], [('t4', [2, 3, 1, 2], 0), ('t3', [4, 1, 2], 1)])
    for a in (1, 8, 64, 4096):
        out['valid_align_%d.gguf' % a] = gguf([kv_u32('general.alignment', a)],
                                              [('a', [3], 0), ('b', [5], 1), ('c', [32], 8)], align=a)
    out['valid_zero_tensors_with_kv_v2.gguf'] = gguf(every_kv[:6], [], version=2)
    return out


def broken_seeds():
    ok = gguf([kv_str('general.architecture', 'llama'), kv_arr('tok', T_STR, ['a', 'b'])],
              [('w', [4, 2], 0), ('b', [4], 0)])
    out = {}
    out['bad_magic.gguf'] = b'GGUX' + ok[4:]
    out['bad_magic_ggml.gguf'] = b'lmgg' + ok[4:]
    out['empty_file.gguf'] = b''
    out['version_1.gguf'] = ok[:4] + struct.pack('<I', 1) + ok[8:]
    out['version_4.gguf'] = ok[:4] + struct.pack('<I', 4) + ok[8:]
    out['version_big_endian.gguf'] = ok[:4] + struct.pack('>I', 3) + ok[8:]
    for cut in (3, 4, 7, 8, 12, 20, 23, 24, 30, 40, 60, len(ok) - 40, len(ok) - 1):
        out['truncated_at_%d.gguf' % cut] = ok[:cut]
    out['huge_kv_count.gguf'] = gguf([], [], n_kv=2**63)
    out['huge_kv_count_small.gguf'] = gguf([kv_u32('a', 1)], [], n_kv=1000)
    out['huge_tensor_count.gguf'] = gguf([], [], n_t=2**64 - 1)
    out['huge_tensor_count_small.gguf'] = gguf([], [('w', [4], 0)], n_t=50)
    out['string_past_end.gguf'] = gguf([kv('k', T_STR, struct.pack('<Q', 1000) + b'abc')], [], pad=False)
    out['string_len_max.gguf'] = gguf([kv('k', T_STR, struct.pack('<Q', 2**64 - 1) + b'abc')], [], pad=False)
    out['key_len_past_end.gguf'] = b'GGUF' + struct.pack('<IQQ', 3, 0, 1) + struct.pack('<Q', 2**40) + b'key'
    out['key_empty.gguf'] = gguf([kv_u32('', 1)], [])
    out['key_with_nul.gguf'] = gguf([kv_u32(b'a\0b', 1)], [])
    out['duplicate_key.gguf'] = gguf([kv_u32('a', 1), kv_u32('a', 2)], [])
    out['unknown_value_type.gguf'] = gguf([kv('k', 13, b'\0' * 8)], [])
    out['unknown_value_type_big.gguf'] = gguf([kv('k', 0xffffffff, b'\0' * 8)], [])
    out['array_of_arrays.gguf'] = gguf([kv('k', T_ARR, struct.pack('<IQ', T_ARR, 1) + struct.pack('<IQ', T_U8, 1) + b'\1')], [])
    nested = struct.pack('<IQ', T_U8, 1) + b'\1'
    for _ in range(64):
        nested = struct.pack('<IQ', T_ARR, 1) + nested
    out['array_nested_deep.gguf'] = gguf([kv('k', T_ARR, nested)], [])
    out['array_unknown_elem_type.gguf'] = gguf([kv('k', T_ARR, struct.pack('<IQ', 77, 1) + b'\0' * 8)], [])
    out['array_len_past_end.gguf'] = gguf([kv('k', T_ARR, struct.pack('<IQ', T_U32, 2**62) + b'\0' * 8)], [])
    out['array_len_overflow.gguf'] = gguf([kv('k', T_ARR, struct.pack('<IQ', T_U64, 2**61 + 1) + b'\0' * 8)], [])
    out['array_str_past_end.gguf'] = gguf([kv('k', T_ARR, struct.pack('<IQ', T_STR, 3) + gstr('a') + struct.pack('<Q', 99))], [])
    out['array_str_count_huge.gguf'] = gguf([kv('k', T_ARR, struct.pack('<IQ', T_STR, 2**63))], [])
    out['alignment_not_pow2.gguf'] = gguf([kv_u32('general.alignment', 48)], [('a', [4], 0)], align=48)
    out['alignment_zero.gguf'] = gguf([kv_u32('general.alignment', 0)], [('a', [4], 0)])
    out['alignment_huge.gguf'] = gguf([kv_u32('general.alignment', 2**31)], [('a', [4], 0)])
    out['alignment_wrong_type.gguf'] = gguf([kv_str('general.alignment', '32')], [('a', [4], 0)])

    def one(name, dims, t, off, data=b'\0' * 64, ndims=None):
        info = gstr(name) + struct.pack('<I', len(dims) if ndims is None else ndims)
        info += struct.pack('<%dQ' % len(dims), *dims) + struct.pack('<IQ', t, off)
        head = b'GGUF' + struct.pack('<IQQ', 3, 1, 0) + info
        return head + b'\0' * ((-len(head)) % 32) + data

    out['dims_zero_count.gguf'] = one('w', [], 0, 0)
    out['dims_five.gguf'] = one('w', [1, 1, 1, 1, 1], 0, 0)
    out['dims_count_huge.gguf'] = one('w', [4], 0, 0, ndims=2**31)
    out['dim_zero.gguf'] = one('w', [4, 0], 0, 0)
    out['dim_absurd.gguf'] = one('w', [2**63 - 1], 0, 0)
    out['dim_product_overflow.gguf'] = one('w', [2**32, 2**32], 0, 0)
    out['dim_product_overflow4.gguf'] = one('w', [2**16, 2**16, 2**16, 2**16], 0, 0)
    out['nbytes_overflow.gguf'] = one('w', [2**58], 0, 0)
    out['tensor_type_unknown_4.gguf'] = one('w', [32], 4, 0)
    out['tensor_type_unknown_39.gguf'] = one('w', [32], 39, 0)
    out['tensor_type_unknown_huge.gguf'] = one('w', [32], 2**31 + 5, 0)
    out['tensor_row_not_block_multiple.gguf'] = one('w', [31], 8, 0)
    out['tensor_kquant_row_short.gguf'] = one('w', [32], 12, 0)
    out['tensor_data_past_end.gguf'] = one('w', [64], 0, 0)
    out['tensor_offset_past_end.gguf'] = one('w', [4], 0, 2**40)
    out['tensor_offset_wraps.gguf'] = one('w', [4], 0, 2**64 - 32)
    out['tensor_offset_misaligned.gguf'] = one('w', [4], 0, 4)
    out['tensor_name_empty.gguf'] = one('', [4], 0, 0)
    out['tensor_name_long.gguf'] = one('x' * 2000, [4], 0, 0)
    out['tensor_name_past_end.gguf'] = b'GGUF' + struct.pack('<IQQ', 3, 1, 0) + struct.pack('<Q', 10**6) + b'w'
    out['tensor_no_data_section.gguf'] = b'GGUF' + struct.pack('<IQQ', 3, 1, 0) + tinfo('w', [4], 0, 0)
    out['tensor_duplicate_name.gguf'] = gguf([], [('w', [4], 0), ('w', [4], 0)])
    return out


def rotor_seeds(tool, tmp):
    runs = {
        'rotor_llama_f32_spm_tied': ['--type', 'f32', '--tied-embeddings'],
        'rotor_llama_f16_spm': ['--type', 'f16'],
        'rotor_llama_f16_spm_tied': ['--type', 'f16', '--tied-embeddings'],
        'rotor_qwen2_bf16_bpe': ['--arch', 'qwen2', '--type', 'bf16'],
        'rotor_llama_q8_0': ['--type', 'q8_0', '--tied-embeddings', '--embd-type', 'q4_0', '--n-embd', '32', '--n-ff', '32', '--n-head', '2', '--n-vocab', '1'],
        'rotor_mistral_q4_0_bias': ['--arch', 'mistral', '--type', 'q4_0', '--qkv-bias', '--n-embd', '32',
                                    '--n-ff', '32', '--n-head', '2', '--n-vocab', '1', '--tied-embeddings'],
    }
    base = ['--n-layer', '1', '--n-embd', '8', '--n-head', '2', '--n-head-kv', '1', '--n-ff', '16',
            '--n-vocab', '1', '--n-ctx', '64', '--tiny-vocab']
    out = {}
    for name, extra in runs.items():
        p = os.path.join(tmp, name + '.gguf')
        subprocess.run([tool, 'gen', '--out', p] + base + extra, check=True, stderr=subprocess.DEVNULL)
        data = open(p, 'rb').read()
        out[name + '.gguf'] = data
        out[name + '_v2.gguf'] = data[:4] + struct.pack('<I', 2) + data[8:]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rotor-model', help='rotor-model binary for model-shaped seeds')
    ap.add_argument('--out', default='build/fuzz/seeds')
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    seeds = valid_seeds()
    seeds.update(broken_seeds())
    if a.rotor_model:
        with tempfile.TemporaryDirectory() as tmp:
            seeds.update(rotor_seeds(a.rotor_model, tmp))
    for name, data in sorted(seeds.items()):
        assert len(data) <= 24 * 1024, (name, len(data))
        with open(os.path.join(a.out, name), 'wb') as f:
            f.write(data)
    print('make_seeds: wrote %d seeds to %s' % (len(seeds), a.out))


if __name__ == '__main__':
    main()
