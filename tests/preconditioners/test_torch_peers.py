"""jgd.soap against pytorch-optimizer's SOAP and jgd.shampoo against its Shampoo, 20 steps in float64.

Runs only where torch and pytorch-optimizer are importable (not in jgd's own environment):
``/work/venv-torch/bin/python -m pytest tests/preconditioners/test_torch_peers.py`` with ``PYTHONPATH`` at the
repository. pytorch-optimizer runs SOAP's QR in float32 whatever the params' dtype, so after the first QR the two
agree only to float32's rounding, amplified by the steps after it: the bound below is what that allows.
"""

import pytest

import jgd
from tests.preconditioners.test_papers import STEPS, max_relative_difference, problem, run

torch = pytest.importorskip("torch")
pytorch_optimizer = pytest.importorskip("pytorch_optimizer")


def torch_run(make, params, grads):
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    optimizer = make(list(tensors.values()))
    history = []
    for step_grads in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(step_grads[k], dtype=torch.float64)
        optimizer.step()
        history.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return history


def test_shampoo_equals_pytorch_optimizer_shampoo(x64):
    params, grads = problem(2)
    want = torch_run(
        lambda ps: pytorch_optimizer.Shampoo(ps, lr=0.05, weight_decay=0.1, matrix_eps=1e-4), params, grads
    )
    got = run(jgd.shampoo(0.05, matrix_eps=1e-4, weight_decay=0.1), params, grads)
    assert max_relative_difference(got, want) <= 1e-10


# Until the first QR (after call 11 with precondition_frequency 10) both run in float64.
def test_soap_equals_pytorch_optimizer_soap_to_its_float32_qr(x64):
    params, grads = problem(3)
    want = torch_run(
        lambda ps: pytorch_optimizer.SOAP(ps, lr=0.02, betas=(0.9, 0.95), weight_decay=0.05), params, grads
    )
    got = run(jgd.soap(0.02, b1=0.9, b2=0.95, weight_decay=0.05), params, grads)
    assert max_relative_difference(got[:11], want[:11]) <= 1e-10
    assert max_relative_difference(got, want) <= 1e-5
    assert len(got) == STEPS


def test_soap_with_frequent_qr(x64):
    params, grads = problem(4)
    want = torch_run(lambda ps: pytorch_optimizer.SOAP(ps, lr=0.02, precondition_frequency=2), params, grads)
    got = run(jgd.soap(0.02, precondition_frequency=2), params, grads)
    assert max_relative_difference(got[:3], want[:3]) <= 1e-10
    assert max_relative_difference(got, want) <= 1e-5
