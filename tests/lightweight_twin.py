"""A PyTorch twin of Lightweight GAN's G and D (torch.nn, weights copied from minigan's), for
tests/test_lightweight.py and benchmarks/lightweight_speed.py."""
import numpy

from minigan.gans import lightweight as lw
from minigan.links import fastgan as B


def torch_twin(c, G, D):
    """torch.nn modules of the same layers, weights copied from minigan's; float64."""
    import torch
    nn, tF = torch.nn, torch.nn.functional
    t = lambda a: torch.tensor(numpy.asarray(a), dtype=torch.float64)

    def conv(link, k=None):
        W = link.W.array
        m = nn.Conv2d(W.shape[1], W.shape[0], W.shape[2], link.stride, link.pad,
                      bias=link.b is not None).double()
        m.weight.data = t(W)
        if link.b is not None:
            m.bias.data = t(link.b.array)
        return m

    def blur(x):            # kornia's filter2d([1 2 1]^2, normalized), reflected borders
        k = t([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3).to(x.dtype)
        return tF.conv2d(tF.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=x.shape[1])

    smooth = blur if c.antialias else (lambda x: x)

    def bn(link):
        m = nn.BatchNorm2d(link.size, eps=link.eps, momentum=0.1).double()
        m.weight.data, m.bias.data = t(link.gamma.array), t(link.beta.array)
        return m

    class Up(nn.Module):
        def __init__(self, blk, antialias=False):       # lucidrains' decoders never blur
            super().__init__()
            self.smooth = blur if antialias else (lambda x: x)
            self.conv, self.bn = conv(blk.conv), bn(blk.bn)
            self.w = nn.Parameter(t(blk.noise.weight.array)) if blk.noise else None

        def forward(self, x, noise=None):
            h = self.conv(self.smooth(tF.interpolate(x, scale_factor=2, mode="nearest")))
            if self.w is not None:
                h = h + self.w.view(1, -1, 1, 1) * noise
            return tF.glu(self.bn(h), dim=1)

    class Attention(nn.Module):
        """lucidrains' Residual(PreNorm(LinearAttention)), written after his einsum form."""

        def __init__(self, blk):
            super().__init__()
            a = blk.attn
            self.h, self.dh, self.ks, self.dim = a.heads, a.dim_head, a.kernel_size, \
                a.to_out.W.shape[0]
            self.g = nn.Parameter(t(blk.norm.g.array).view(1, -1, 1, 1))
            self.b = nn.Parameter(t(blk.norm.b.array).view(1, -1, 1, 1))
            self.lin_q, self.lin_kv, self.q, self.kv, self.out = (
                conv(a.to_lin_q), conv(a.to_lin_kv), conv(a.to_q), conv(a.to_kv), conv(a.to_out))
            dw = a.to_lin_kv_dw.W.array
            self.lin_dw = nn.Conv2d(self.dim, self.dim, 3, padding=1, groups=self.dim,
                                    bias=False).double()
            self.lin_dw.weight.data = t(dw)

        def attend(self, fmap):
            b, _, X, Y = fmap.shape
            h, dh, ks, scale = self.h, self.dh, self.ks, self.dh ** -0.5
            heads = lambda z: z.reshape(b * h, -1, X * Y).transpose(1, 2)
            lq = heads(self.lin_q(fmap)).softmax(-1) * scale
            lk, lv = map(heads, self.lin_kv(self.lin_dw(fmap)).chunk(2, dim=1))
            context = torch.einsum("bnd,bne->bde", lk.softmax(-2), lv)
            lin = torch.einsum("bnd,bde->bne", lq, context).transpose(1, 2).reshape(b, -1, X, Y)
            q = self.q(fmap).reshape(b * h, dh, X * Y).transpose(1, 2) * scale
            k, v = (tF.unfold(z.reshape(b * h, dh, X, Y), ks, padding=ks // 2)
                    .reshape(b * h, dh, ks * ks, X * Y).permute(0, 3, 2, 1)
                    for z in self.kv(fmap).chunk(2, dim=1))
            sim = torch.einsum("bid,bijd->bij", q, k)
            full = torch.einsum("bij,bijd->bid", sim.softmax(-1), v)
            full = full.transpose(1, 2).reshape(b, -1, X, Y)
            return self.out(torch.cat((tF.gelu(lin), full), dim=1))

        def forward(self, x):
            var, mean = torch.var(x, dim=1, unbiased=False, keepdim=True), x.mean(1, keepdim=True)
            return x + self.attend((x - mean) / (var + 1e-5).sqrt() * self.g + self.b)

    class SLE(nn.Module):
        def __init__(self, blk):
            super().__init__()
            self.c4, self.c1 = conv(blk.conv4), conv(blk.conv1)

        def forward(self, low, high):
            h = tF.adaptive_avg_pool2d(low, 4)
            return high * torch.sigmoid(self.c1(tF.silu(self.c4(h))))

    class Down(nn.Module):
        def __init__(self, blk):
            super().__init__()
            m, d = blk.main, blk.direct
            lr = nn.LeakyReLU(0.2)
            self.main = nn.Sequential(conv(m[0]), bn(m[1]), lr, conv(m[3]), bn(m[4]), lr)
            self.direct = nn.Sequential(nn.AvgPool2d(2), conv(d[1]), bn(d[2]), lr)

        def forward(self, x):
            x = smooth(x)
            return self.main(x) + self.direct(x)

    def small_layer(blk):
        """The small head's layers one by one: conv, lrelu, (attention), down, (attention),
        pool to 4 x 4, conv."""
        kind = {"Convolution2D": conv, "DownBlock": Down, "ResidualAttention": Attention}
        if type(blk).__name__ in kind:
            return kind[type(blk).__name__](blk)
        return nn.LeakyReLU(0.2) if blk is B.lrelu else nn.AdaptiveAvgPool2d(4)

    class TG(nn.Module):
        def __init__(self):
            super().__init__()
            dc = nn.ConvTranspose2d(c.n_z, 2 * lw.g_width(c, 4), 4, bias=False).double()
            dc.weight.data = t(G.init.deconv.W.array)
            self.init, self.init_bn = dc, bn(G.init.bn)
            self.ups = nn.ModuleList([Up(b, c.antialias) for b in G.ups])
            self.sles = nn.ModuleDict({str(h): SLE(getattr(G, f"sle{h}")) for _, h in c.sle})
            self.out = conv(G.out)
            self.attn = nn.ModuleDict({str(w): Attention(getattr(G, f"attn{w}"))
                                       for w in c.attn_res_layers if hasattr(G, f"attn{w}")})

        def forward(self, z, noise):
            h = tF.glu(self.init_bn(self.init(z[:, :, None, None])), dim=1)
            feats = {4: h}
            for i, r in enumerate(G.res):
                if str(h.shape[2]) in self.attn:
                    h = self.attn[str(h.shape[2])](h)
                h = self.ups[i](h, noise[i])
                if str(r) in self.sles:
                    h = self.sles[str(r)](feats[G.sle[r]], h)
                feats[r] = h
            return torch.tanh(self.out(h))

    class TD(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv(D.stem)
            self.downs = nn.ModuleList([Down(b) for b in D.downs])
            lg = D.logits
            self.logits = nn.Sequential(conv(lg[0]), bn(lg[1]), nn.LeakyReLU(0.2), conv(lg[3]))
            self.small = nn.Sequential(*[small_layer(blk) for blk in D.small])
            self.attn = nn.ModuleDict({str(w): Attention(getattr(D, f"attn{w}"))
                                       for w in c.attn_res_layers if hasattr(D, f"attn{w}")})
            self.dec1 = nn.ModuleList([Up(b) for b in D.dec1.ups] + [conv(D.dec1.out)])
            self.dec2 = nn.ModuleList([Up(b) for b in D.dec2.ups] + [conv(D.dec2.out)])

        def forward(self, x):
            h = tF.leaky_relu(self.stem(x), 0.2)
            for blk in self.downs:
                if str(h.shape[2]) in self.attn:
                    h = self.attn[str(h.shape[2])](h)
                h = blk(h)
            k = x.shape[2] // 32
            small = self.small(tF.avg_pool2d(x, k) if k > 1 else x)
            d = h
            for layer in self.dec1[:-1]:
                d = layer(d)
            y = self.logits(smooth(h) if c.disc_output_size == 1 else h)
            return y, small, torch.tanh(self.dec1[-1](d))

    return torch, TG(), TD()
