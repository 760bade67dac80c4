"""ProjectedGAN's networks in torch.nn as the official code writes them (torch.nn.utils.spectral_norm,
nn.BatchNorm2d, bilinear x2 with aligned corners), holding a copy of minigan's weights, u and v."""
import numpy


def _t(torch, a):
    return torch.from_numpy(numpy.array(a))


def twins(torch, G, D):
    """(torch G, torch D head) for minigan's projected Generator and Discriminator (float64)."""
    nn, tf = torch.nn, torch.nn.functional
    sn = nn.utils.spectral_norm

    def copy_sn(mod, link):
        """A torch conv under spectral_norm with minigan's SpectralNorm weights, u and v."""
        mod = sn(mod.double())              # float64 before the copy
        with torch.no_grad():
            mod.weight_orig.copy_(_t(torch, link.link.W.array))
            if link.link.b is not None:
                mod.bias.copy_(_t(torch, link.link.b.array))
            mod.weight_u.copy_(_t(torch, link.u))
            mod.weight_v.copy_(_t(torch, link.v))
        return mod

    def conv(link, **kw):
        W = link.link.W.array
        return copy_sn(nn.Conv2d(W.shape[1], W.shape[0], W.shape[2], bias=link.link.b is not None,
                                 stride=link.link.stride, padding=link.link.pad, **kw), link)

    def frozen(link):
        W = link.W
        mod = nn.Conv2d(W.shape[1], W.shape[0], 1).double()
        with torch.no_grad():
            mod.weight.copy_(_t(torch, W))
            mod.bias.copy_(_t(torch, link.b))
        return mod

    def bn(link):
        return nn.BatchNorm2d(link.size, eps=link.eps)

    def glu(x):
        n = x.shape[1] // 2
        return x[:, :n] * torch.sigmoid(x[:, n:])

    class SE(nn.Module):
        def __init__(self, blk):
            super().__init__()
            self.conv4, self.conv1 = conv(blk.conv4), conv(blk.conv1)

        def forward(self, low, high):
            h = self.conv4(tf.adaptive_avg_pool2d(low, 4))
            return high * torch.sigmoid(self.conv1(h * torch.sigmoid(h)))

    class Up(nn.Module):
        def __init__(self, blk, lite):
            super().__init__()
            self.lite = lite
            if lite:
                self.conv1, self.bn1 = conv(blk.conv), bn(blk.bn)
            else:
                self.conv1, self.bn1 = conv(blk.conv1), bn(blk.bn1)
                self.conv2, self.bn2 = conv(blk.conv2), bn(blk.bn2)
                self.w1 = nn.Parameter(_t(torch, blk.noise1.weight.array))
                self.w2 = nn.Parameter(_t(torch, blk.noise2.weight.array))

        def forward(self, x, n1=None, n2=None):
            h = self.conv1(tf.interpolate(x, scale_factor=2, mode="nearest"))
            if self.lite:
                return glu(self.bn1(h))
            h = glu(self.bn1(h + self.w1 * n1))
            return glu(self.bn2(self.conv2(h) + self.w2 * n2))

    class Gen(nn.Module):
        def __init__(self):
            super().__init__()
            d = G.init.deconv
            W = d.link.W.array
            self.init = copy_sn(nn.ConvTranspose2d(W.shape[0], W.shape[1], 4, 1, 0, bias=False), d)
            self.init_bn = bn(G.init.bn)
            self.ups = nn.ModuleList(Up(b, G.lite) for b in G.ups)
            self.se = nn.ModuleDict({str(r): SE(getattr(G, f"se{r}")) for r in G.sle})
            self.to_big = conv(G.to_big)

        def forward(self, z, noise=None):
            z = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
            h = glu(self.init_bn(self.init(z.view(len(z), -1, 1, 1))))
            feats = {4: h}
            for i, (r, up) in enumerate(zip(G.res, self.ups)):
                h = up(h) if G.lite else up(h, noise[2 * i], noise[2 * i + 1])
                if r in G.sle:
                    h = self.se[str(r)](feats[G.sle[r]], h)
                feats[r] = h
            return self.to_big(h)

    class Head(nn.Module):
        """The official F_RandomProj's CCM + CSM and MultiScaleD, on given taps."""

        def __init__(self):
            super().__init__()
            P = D.projector
            self.ccm = nn.ModuleList(frozen(getattr(P, f"ccm{i}")) for i in range(4))
            self.csm = nn.ModuleList(frozen(getattr(P, f"csm{i}")) for i in range(4))
            self.discs = nn.ModuleList()
            for i in range(4):
                layers = []
                for layer in getattr(D, f"disc{i}").main:
                    if hasattr(layer, "link"):
                        layers.append(conv(layer))
                    elif hasattr(layer, "avg_mean"):
                        layers.append(bn(layer))
                    else:
                        layers.append(nn.LeakyReLU(0.2))
                self.discs.append(nn.Sequential(*layers))

        def forward(self, taps):
            mixed = [m(t) for m, t in zip(self.ccm, taps)]
            out, h = [None] * 4, None
            for i in (3, 2, 1, 0):
                h = mixed[i] if h is None else mixed[i] + h
                h = self.csm[i](tf.interpolate(h, scale_factor=2, mode="bilinear",
                                               align_corners=True))
                out[i] = h
            return torch.cat([d(f).view(len(f), -1) for d, f in zip(self.discs, out)], dim=1)

    return Gen().double().train(), Head().double().train()
