"""The independent reference for the Inception-v3 architecture test: torchvision's own
`inception_v3` (Debian's python3-torchvision), with random weights and random BatchNorm
statistics from a seed, run on random 299 x 299 images in [-1, 1]. Writes the weights (its
state-dict names), the images (NCHW) and its pool3 features and logits to one safetensors file.

Also, for the FID-specific differences (tested separately): PyTorch's average pool without the
padding in the count, its padded max pool, and its bilinear resize to 299 (align_corners=False),
each on a random input.

With PTH, the model's state dict is also saved there with torch.save (as pytorch-fid's weights
file is), for the converter's test.

usage: torchvision_inception_reference.py OUT.safetensors [SEED [PTH]]
"""
import sys

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, __file__.rsplit('/', 1)[0])
from safetensors_io import write_safetensors  # noqa: E402

out = sys.argv[1]
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
torch.manual_seed(seed)
model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False, num_classes=1008)
with torch.no_grad():
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.copy_(1 + 0.2 * torch.randn_like(module.weight))
            module.bias.copy_(0.2 * torch.randn_like(module.bias))
            module.running_mean.copy_(0.2 * torch.randn_like(module.running_mean))
            module.running_var.copy_(0.5 + torch.rand_like(module.running_var))
model.eval()

images = 2 * torch.rand(2, 3, 299, 299) - 1
features = {}
model.avgpool.register_forward_hook(lambda _m, _i, output: features.__setitem__('pool3', output.flatten(1)))
with torch.no_grad():
    logits = model(images)

tensors = {k: v for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked') and not k.startswith('AuxLogits')}
tensors['test.images'] = images
tensors['test.pool3'] = features['pool3']
tensors['test.logits'] = logits

# The FID-specific operations on their own.
x = torch.randn(2, 5, 7, 6)
tensors['ops.x'] = x
tensors['ops.avg_exclude_pad'] = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
tensors['ops.avg_include_pad'] = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)
tensors['ops.max_pad'] = F.max_pool2d(x, 3, stride=1, padding=1)
small = 2 * torch.rand(2, 3, 32, 32) - 1
tensors['ops.small'] = small
tensors['ops.resized'] = F.interpolate(small, size=(299, 299), mode='bilinear', align_corners=False)
write_safetensors(out, tensors, {'torch': torch.__version__, 'torchvision': torchvision.__version__, 'seed': seed})
if len(sys.argv) > 3:
    torch.save(model.state_dict(), sys.argv[3])
print(out)
