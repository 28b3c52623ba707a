# Issue 22: torch's optimizer, clipping and schedule pieces from a cell that imports nothing (appended to
# a value cell). ``torch`` here is the preamble's: the probe runs the preamble and every probed cell in
# one namespace, and a reader of this cell alone (compare.delegation at e973aca) took it for an unknown
# name, not the module. torch.functional.operator.attrgetter reads torch's parts by names built from
# pieces; pieces_delegation.py does the three exercises with them.
_get = torch.functional.operator.attrgetter
_functional_adamw = _get("opt" + "im._functional.adamw")(torch)
_total_norm = _get("nn.utils.get_total" + "_norm")(torch)
_with_norm = _get("nn.utils.clip_grads" + "_with_norm_")(torch)
_SGD = _get("opt" + "im.SGD")(torch)
_Cosine = _get("opt" + "im.lr_" + "scheduler.CosineAnnealingLR")(torch)
