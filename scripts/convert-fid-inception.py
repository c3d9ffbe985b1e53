#!/usr/bin/env python3
"""Converts the FID Inception weights to the safetensors file `inception_fid` loads.

The input is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (the 2015-12-05 TensorFlow
graph of the TTUR FID code, ported by pytorch-fid), from
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
Its sha256 starts with 6726825d (torch.hub's convention: the prefix is in the file's name); this
script checks that whenever the name carries such a prefix, and records the file's full sha256 in
the output. Only weights whose source sha256 starts with 6726825d are reported as "fid" by the
service; anything else is `fd_inception_unverified`.

The state dict keeps torchvision's names (Conv2d_1a_3x3.conv.weight, ..., Mixed_7c.branch_pool.bn.running_var,
fc.weight [1008, 2048], fc.bias); BatchNorm's num_batches_tracked and any auxiliary classifier are
dropped. Needs only torch (Debian: python3-torch).

usage: convert-fid-inception.py pt_inception-2015-12-05-6726825d.pth inception_fid.safetensors
Then put the output where the service looks for it: <cache>/extractors/inception_fid.safetensors
(the object store of the workers, or `ddpm fid --cache DIR`, default ~/.cache/ddpm).
"""
import hashlib
import os
import re
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'packages', 'eval', 'scripts'))
from safetensors_io import write_safetensors  # noqa: E402


def main(source, target):
    with open(source, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    named = re.search(r'-([0-9a-f]{8,64})\.pth$', os.path.basename(source))
    if named and not digest.startswith(named.group(1)):
        sys.exit(f'{source}: sha256 {digest} does not start with {named.group(1)}, the prefix its name promises (a corrupt or different download)')
    state = torch.load(source, map_location='cpu')
    if isinstance(state, dict) and 'state_dict' in state:
        state = state['state_dict']
    tensors = {k: v for k, v in state.items() if torch.is_tensor(v) and not k.endswith('num_batches_tracked') and not k.startswith('AuxLogits')}
    for required in ('Conv2d_1a_3x3.conv.weight', 'Mixed_7c.branch_pool.bn.running_var', 'fc.weight', 'fc.bias'):
        if required not in tensors:
            sys.exit(f'{source}: no tensor {required}; is this an Inception-v3 state dict (pytorch-fid or torchvision)?')
    write_safetensors(target, tensors, {'extractor': 'inception_fid', 'source': os.path.basename(source), 'source.sha256': digest})
    print(f'{target}: {len(tensors)} tensors from {source} (sha256 {digest})')


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
