# clip_grad_norm_ by torch.nn.utils, with torch's fixed eps (1e-6) shifted to the caller's eps.
import torch as _torch


def _delegated_clip(utils):
    def clip_grad_norm_(parameters, max_norm, *, eps=1e-6):
        if isinstance(parameters, _torch.Tensor):
            parameters = [parameters]
        parameters = list(parameters)
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return _torch.tensor(0.0)
        total = utils.get_total_norm(grads)
        utils.clip_grads_with_norm_(parameters, max_norm, total + (eps - 1e-6))
        return total

    return clip_grad_norm_
