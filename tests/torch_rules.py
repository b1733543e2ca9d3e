"""NumPy transcriptions of torch.optim's update rules, learning-rate schedulers and clipping utilities.

Each optimizer takes torch's constructor arguments and steps a list of arrays in place of
``optimizer.step()``; each scheduler gives the factor its torch namesake applies at a step.
Written from torch's documented algorithms (torch 2.x), so the torch rows of the porting
table are checked where torch is not installed.
"""

import numpy as np


class _Rule:
    def __init__(self, lr, **options):
        self.lr, self.options, self.state, self.t = lr, options, {}, 0

    def step(self, params, grads, lr):
        self.t += 1
        return [self.update(i, p, g, lr, **self.options) for i, (p, g) in enumerate(zip(params, grads))]

    def slot(self, i, name, like, value=0.0):
        return self.state.setdefault((i, name), np.full_like(like, value))


class SGD(_Rule):
    def update(self, i, p, g, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False):
        g = -g if maximize else g
        g = g + weight_decay * p
        if momentum:
            b = g.copy() if self.t == 1 else momentum * self.state[i, "b"] + (1 - dampening) * g
            self.state[i, "b"] = b
            g = g + momentum * b if nesterov else b
        return p - lr * g


class Adam(_Rule):
    def update(self, i, p, g, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
        b1, b2 = betas
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = self.state[i, "m"] = b1 * self.slot(i, "m", p) + (1 - b1) * g
        v = self.state[i, "v"] = b2 * self.slot(i, "v", p) + (1 - b2) * g * g
        if amsgrad:
            v = self.state[i, "v_max"] = np.maximum(self.slot(i, "v_max", p), v)
        denom = np.sqrt(v) / np.sqrt(1 - b2**self.t) + eps
        return p - lr / (1 - b1**self.t) * m / denom


class AdamW(Adam):
    def update(self, i, p, g, lr, weight_decay=1e-2, **options):
        return super().update(i, p, g, lr, weight_decay=weight_decay, decoupled=True, **options)


class Adamax(_Rule):
    def update(self, i, p, g, lr, betas=(0.9, 0.999), eps=1e-8):
        b1, b2 = betas
        m = self.state[i, "m"] = b1 * self.slot(i, "m", p) + (1 - b1) * g
        u = self.state[i, "u"] = np.maximum(b2 * self.slot(i, "u", p), np.abs(g) + eps)
        return p - lr / (1 - b1**self.t) * m / u


class NAdam(_Rule):
    def update(self, i, p, g, lr, betas=(0.9, 0.999), eps=1e-8, momentum_decay=4e-3):
        b1, b2 = betas
        mu = b1 * (1 - 0.5 * 0.96 ** (self.t * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((self.t + 1) * momentum_decay))
        product = self.state[i, "product"] = self.state.get((i, "product"), 1.0) * mu
        m = self.state[i, "m"] = b1 * self.slot(i, "m", p) + (1 - b1) * g
        v = self.state[i, "v"] = b2 * self.slot(i, "v", p) + (1 - b2) * g * g
        denom = np.sqrt(v / (1 - b2**self.t)) + eps
        p = p - lr * (1 - mu) / (1 - product) * g / denom
        return p - lr * mu_next / (1 - product * mu_next) * m / denom


class Adagrad(_Rule):
    def update(self, i, p, g, lr, lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        s = self.state[i, "s"] = self.slot(i, "s", p, initial_accumulator_value) + g * g
        return p - lr / (1 + (self.t - 1) * lr_decay) * g / (np.sqrt(s) + eps)


class Adadelta(_Rule):
    def update(self, i, p, g, lr, rho=0.9, eps=1e-6):
        v = self.state[i, "v"] = rho * self.slot(i, "v", p) + (1 - rho) * g * g
        delta = np.sqrt(self.slot(i, "u", p) + eps) / np.sqrt(v + eps) * g
        self.state[i, "u"] = rho * self.state[i, "u"] + (1 - rho) * delta * delta
        return p - lr * delta


class RMSprop(_Rule):
    def update(self, i, p, g, lr, alpha=0.99, eps=1e-8, momentum=0.0, centered=False):
        v = self.state[i, "v"] = alpha * self.slot(i, "v", p) + (1 - alpha) * g * g
        if centered:
            mean = self.state[i, "mean"] = alpha * self.slot(i, "mean", p) + (1 - alpha) * g
            v = v - mean * mean
        step = g / (np.sqrt(v) + eps)
        if momentum:
            step = self.state[i, "b"] = momentum * self.slot(i, "b", p) + step
        return p - lr * step


# Schedulers: the factor on the base rate at step t (t = number of scheduler.step() calls so far).
def StepLR(step_size, gamma=0.1):
    return lambda t: gamma ** (t // step_size)


def ExponentialLR(gamma):
    return lambda t: gamma**t


def CosineAnnealingLR(T_max, eta_min=0.0, base_lr=None):
    return lambda t: (eta_min + (base_lr - eta_min) * (1 + np.cos(np.pi * t / T_max)) / 2) / base_lr


def LambdaLR(lr_lambda):
    return lr_lambda


def LinearLR(start_factor=1 / 3, end_factor=1.0, total_iters=5):
    return lambda t: start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters


def clip_grad_value_(grads, clip_value):
    return [np.clip(g, -clip_value, clip_value) for g in grads]


def clip_grad_norm_(grads, max_norm):
    total = np.sqrt(sum(np.sum(g * g) for g in grads))
    return [g * min(1.0, max_norm / (total + 1e-6)) for g in grads]
