"""The FID Inception-v3 written plainly in torch.nn for the tests: torchvision's Inception3 module
names (those of pytorch-fid's weight file), pytorch-fid's forward (its [0, 1] input resized to
299 x 299, then 2 x - 1) and its patched blocks, with random weights and BN statistics.

Written branch by branch as the paper's figures draw them, pooling before each pool branch's
conv: none of minigan's fusions, so the two share only the weights."""


def build(torch, seed=0):
    """The twin in eval mode, float32, its weights drawn from seed."""
    nn, tf = torch.nn, torch.nn.functional

    class BasicConv2d(nn.Module):
        def __init__(self, i, o, k, stride=1, padding=0):
            super().__init__()
            self.conv = nn.Conv2d(i, o, k, stride=stride, padding=padding, bias=False)
            self.bn = nn.BatchNorm2d(o, eps=0.001)

        def forward(self, x):
            return tf.relu(self.bn(self.conv(x)))

    C = BasicConv2d

    def tf_avg(x):          # TensorFlow's average: the padding is not counted
        return tf.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    class A(nn.Module):
        def __init__(self, c, pool):
            super().__init__()
            self.branch1x1 = C(c, 64, 1)
            self.branch5x5_1, self.branch5x5_2 = C(c, 48, 1), C(48, 64, 5, padding=2)
            self.branch3x3dbl_1 = C(c, 64, 1)
            self.branch3x3dbl_2 = C(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = C(96, 96, 3, padding=1)
            self.branch_pool = C(c, pool, 1)

        def forward(self, x):
            return torch.cat([
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(tf_avg(x))], 1)

    class B(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.branch3x3 = C(c, 384, 3, stride=2)
            self.branch3x3dbl_1 = C(c, 64, 1)
            self.branch3x3dbl_2 = C(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = C(96, 96, 3, stride=2)

        def forward(self, x):
            return torch.cat([
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                tf.max_pool2d(x, 3, 2)], 1)

    class Seven(nn.Module):     # InceptionC
        def __init__(self, c, c7):
            super().__init__()
            row, col = dict(k=(1, 7), padding=(0, 3)), dict(k=(7, 1), padding=(3, 0))
            self.branch1x1 = C(c, 192, 1)
            self.branch7x7_1 = C(c, c7, 1)
            self.branch7x7_2 = C(c7, c7, **row)
            self.branch7x7_3 = C(c7, 192, **col)
            self.branch7x7dbl_1 = C(c, c7, 1)
            self.branch7x7dbl_2 = C(c7, c7, **col)
            self.branch7x7dbl_3 = C(c7, c7, **row)
            self.branch7x7dbl_4 = C(c7, c7, **col)
            self.branch7x7dbl_5 = C(c7, 192, **row)
            self.branch_pool = C(c, 192, 1)

        def forward(self, x):
            d = x
            for n in range(1, 6):
                d = getattr(self, f"branch7x7dbl_{n}")(d)
            return torch.cat([
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                d,
                self.branch_pool(tf_avg(x))], 1)

    class D(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.branch3x3_1, self.branch3x3_2 = C(c, 192, 1), C(192, 320, 3, stride=2)
            self.branch7x7x3_1 = C(c, 192, 1)
            self.branch7x7x3_2 = C(192, 192, (1, 7), padding=(0, 3))
            self.branch7x7x3_3 = C(192, 192, (7, 1), padding=(3, 0))
            self.branch7x7x3_4 = C(192, 192, 3, stride=2)

        def forward(self, x):
            s = x
            for n in range(1, 5):
                s = getattr(self, f"branch7x7x3_{n}")(s)
            return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), s, tf.max_pool2d(x, 3, 2)],
                             1)

    class E(nn.Module):
        def __init__(self, c, max_pool):
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = C(c, 320, 1)
            self.branch3x3_1 = C(c, 384, 1)
            self.branch3x3_2a = C(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3_2b = C(384, 384, (3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = C(c, 448, 1)
            self.branch3x3dbl_2 = C(448, 384, 3, padding=1)
            self.branch3x3dbl_3a = C(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = C(384, 384, (3, 1), padding=(1, 0))
            self.branch_pool = C(c, 192, 1)

        def forward(self, x):
            a = self.branch3x3_1(x)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            pool = tf.max_pool2d(x, 3, 1, 1) if self.max_pool else tf_avg(x)
            return torch.cat([
                self.branch1x1(x),
                self.branch3x3_2a(a), self.branch3x3_2b(a),
                self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
                self.branch_pool(pool)], 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = C(3, 32, 3, stride=2)
            self.Conv2d_2a_3x3 = C(32, 32, 3)
            self.Conv2d_2b_3x3 = C(32, 64, 3, padding=1)
            self.Conv2d_3b_1x1 = C(64, 80, 1)
            self.Conv2d_4a_3x3 = C(80, 192, 3)
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
            self.Mixed_6a = B(288)
            self.Mixed_6b, self.Mixed_6c = Seven(768, 128), Seven(768, 160)
            self.Mixed_6d, self.Mixed_6e = Seven(768, 160), Seven(768, 192)
            self.Mixed_7a = D(768)
            self.Mixed_7b, self.Mixed_7c = E(1280, False), E(2048, True)
            self.fc = nn.Linear(2048, 1008)

        def forward(self, x, resize=True):
            """pytorch-fid's InceptionV3(normalize_input=True): x in [0, 1] -> (N, 2048)."""
            if resize:
                x = tf.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = 2 * x - 1
            h = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            h = tf.max_pool2d(h, 3, 2)
            h = tf.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(h)), 3, 2)
            for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
                h = getattr(self, f"Mixed_{name}")(h)
            return tf.adaptive_avg_pool2d(h, 1).flatten(1)

    g = torch.Generator().manual_seed(seed)
    net = Net()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):    # He-normal: activations stay O(1) through 94 convs
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.num_batches_tracked.fill_(1000)
    return net.eval()
