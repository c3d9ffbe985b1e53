"""Writes safetensors files (https://huggingface.co/docs/safetensors) from float32 tensors with
the standard library and torch only (Debian has no `safetensors` package): an 8-byte
little-endian header length, a JSON header of {name: {dtype, shape, data_offsets}}, the bytes."""
import json
import struct

import torch


def write_safetensors(path, tensors, metadata=None):
    header = {}
    chunks = []
    offset = 0
    for name, tensor in tensors.items():
        data = tensor.detach().to(torch.float32).contiguous().numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(tensor.shape), 'data_offsets': [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    encoded = json.dumps(header).encode('utf-8')
    encoded += b' ' * ((8 - len(encoded) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(encoded)))
        f.write(encoded)
        for chunk in chunks:
            f.write(chunk)
