"""`python -m tests.serve_tiny`: the real server (uvicorn, signals, drain) serving one tiny seeded model.

Real-process tests start this instead of `python -m service`: the same `service.core.server.serve` path, with a
model that starts in milliseconds and whose forward pass can be made slow. Environment: the `EXPLAIN_*`
settings (the served model is always `tiny`), plus

    TINY_FORWARD_S   seconds each batched forward pass sleeps (holds the worker busy), default 0
    TINY_REPORT      a file to which the model's state is written as JSON at exit: hooks left, training
                     flag, parameter gradients
    TINY_DEVICE_FAULT_ON_WHITE   if set, a forward pass over an all-white image raises torch.AcceleratorError
                     (an unrecoverable device error, injected)
"""

import json
import os
import sys
import time
from pathlib import Path

import torch

from service.core.logs import configure_logging
from service.core.server import serve
from service.core.settings import Settings
from service.http.app import create_app
from tests.tiny_models import TinyGapNet, prepare_tiny


class SlowGapNet(TinyGapNet):
    """TinyGapNet whose forward pass sleeps first (the GIL is released, as in a real device-bound pass)."""

    def __init__(self, forward_s: float) -> None:
        super().__init__()
        self.forward_s = forward_s
        self.fault_on_white = False
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.forward_s:
            time.sleep(self.forward_s)
        if self.fault_on_white and bool((x.amin(dim=(1, 2, 3)) > 1.9).any()):  # white is 2.0 after normalising
            raise torch.AcceleratorError("injected unrecoverable device error")
        return super().forward(x)


def model_state(module: torch.nn.Module) -> dict[str, object]:
    submodules = list(module.modules())
    return {
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
            for m in submodules
        ),
        "training": any(m.training for m in submodules),
        "grads": sum(p.grad is not None for p in module.parameters()),
        "requires_grad": sum(p.requires_grad for p in module.parameters()),
    }


def main() -> int:
    settings = Settings(models=["tiny"])
    configure_logging(settings.log_level)
    torch.manual_seed(0)
    module = SlowGapNet(0.0)
    model = prepare_tiny("tiny", module)
    module.forward_s = float(os.environ.get("TINY_FORWARD_S", "0"))  # after the warm-up pass of prepare_model
    module.fault_on_white = bool(os.environ.get("TINY_DEVICE_FAULT_ON_WHITE"))
    code = serve(create_app(settings, models={"tiny": model}), settings)
    if report := os.environ.get("TINY_REPORT"):
        Path(report).write_text(json.dumps(model_state(module)))
    return code


if __name__ == "__main__":
    sys.exit(main())
