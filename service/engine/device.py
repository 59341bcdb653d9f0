"""How a failed device pass is treated: memory exhaustion is retried smaller or refused as retryable, and an
unrecoverable device error (a poisoned CUDA context) ends the worker, so that the process exits for a restart."""

import torch

OUT_OF_MEMORY = (torch.OutOfMemoryError, MemoryError)
UNRECOVERABLE = (torch.AcceleratorError,)
