"""PyTorch dual-backbone models in the research code's released layout, for the conversion tests.

Written for the tests from the published architectures, not from sslrs_tf's Keras
code: torchvision's ResNet (BasicBlock/Bottleneck, ``downsample.0``/``.1``, MLP head
``fc.0``/``fc.2``) and the original Swin Transformer, which works on token
sequences ``[B, L, C]`` and registers ``relative_position_index`` and ``attn_mask`` as
buffers. A :class:`Dual` holds ``backbone1`` (S1) and ``backbone2`` (S2), so its
``state_dict()`` has the released keys.
"""

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # torchvision: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


RESNET_BLOCKS = {"resnet10": (BasicBlock, [1, 1, 1, 1]), "resnet18": (BasicBlock, [2, 2, 2, 2]),
                 "resnet50": (Bottleneck, [3, 4, 6, 3])}


class ResNet(nn.Module):
    """torchvision's ResNet with any input channel count and the research code's MLP head as ``fc``."""

    def __init__(self, arch, in_channels, out_dim=128):
        super().__init__()
        block, layers = RESNET_BLOCKS[arch]
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(count):
                blocks.append(block(inplanes, planes, 2 if i and not j else 1))
                inplanes = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Sequential(nn.Linear(inplanes, inplanes), nn.ReLU(), nn.Linear(inplanes, out_dim))

    def features(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.features(x))


def window_partition(x, w):
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def window_reverse(windows, w, h, wd):
    b = windows.shape[0] // (h * wd // w // w)
    return windows.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, -1)


class WindowAttention(nn.Module):
    def __init__(self, dim, window, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.5)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += window - 1
        rel[:, :, 1] += window - 1
        rel[:, :, 0] *= 2 * window - 1
        self.register_buffer("relative_position_index", rel.sum(-1))
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(b // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads, n, n)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim, resolution, heads, window, shift):
        super().__init__()
        self.resolution = resolution
        if resolution <= window:
            window, shift = resolution, 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        mask = None
        if shift:
            img = torch.zeros(1, resolution, resolution, 1)
            cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for k, (hs, ws) in enumerate((hs, ws) for hs in cuts for ws in cuts):
                img[:, hs, ws, :] = k
            windows = window_partition(img, window).view(-1, window * window)
            mask = windows.unsqueeze(1) - windows.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        self.register_buffer("attn_mask", mask)

    def forward(self, x):
        b, length, c = x.shape
        r = self.resolution
        y = self.norm1(x).view(b, r, r, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = window_reverse(self.attn(window_partition(y, self.window), self.attn_mask), self.window, r, r)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y.reshape(b, length, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, resolution, dim):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        b, _, c = x.shape
        x = x.view(b, self.resolution, self.resolution, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    def __init__(self, dim, resolution, depth, heads, window, last):
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, resolution, heads, window, 0 if j % 2 == 0 else window // 2)
                                    for j in range(depth))
        self.downsample = None if last else PatchMerging(resolution, dim)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_channels, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


SWIN_SPECS = {"swin_t": dict(patch=4, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7),
              "swin_micro": dict(patch=2, dim=24, depths=(2, 2, 2, 2), heads=(1, 2, 4, 8), window=2)}


class Swin(nn.Module):
    """The original Swin Transformer (no absolute position embedding), pooled over the final tokens."""

    def __init__(self, arch, in_channels, image_size, head_dim=128):
        super().__init__()
        s = SWIN_SPECS[arch]
        self.patch_embed = PatchEmbed(s["patch"], in_channels, s["dim"])
        res = image_size // s["patch"]
        self.layers = nn.ModuleList(
            BasicLayer(s["dim"] * 2 ** i, res // 2 ** i, d, h, s["window"], i == 3)
            for i, (d, h) in enumerate(zip(s["depths"], s["heads"])))
        self.norm = nn.LayerNorm(s["dim"] * 8)
        self.head = nn.Linear(s["dim"] * 8, head_dim)  # released Swin checkpoints may carry a head

    def features(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).mean(1)

    def forward(self, x):
        return self.head(self.features(x))


class Dual(nn.Module):
    """``backbone1`` (S1, 2 channels) and ``backbone2`` (S2, 13 channels) of one architecture, initialised so
    that every weight matters (BatchNorm statistics and LayerNorm affines away from their identity values)."""

    def __init__(self, arch, image_size=224, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        if arch in SWIN_SPECS:
            self.backbone1, self.backbone2 = Swin(arch, 2, image_size), Swin(arch, 13, image_size)
        else:
            self.backbone1, self.backbone2 = ResNet(arch, 2), ResNet(arch, 13)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.2, 0.2)
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.2, 0.2)
                    module.running_var.uniform_(0.5, 2.0)
        self.eval()
