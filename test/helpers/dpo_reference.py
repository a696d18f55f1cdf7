"""Independent DPO loss and gradient (PyTorch autograd, float64), for test/dpo.test.ts.

Reads a JSON list of cases {"kind", "beta", "label_smoothing", "policy_chosen",
"policy_rejected", "ref_chosen", "ref_rejected"} on stdin and prints a list of {"loss",
"d_chosen", "d_rejected"}: the mean loss over pairs and its gradient w.r.t. the policy
log-probs, written the way TRL's DPOTrainer does.
"""
import json
import sys

import torch
import torch.nn.functional as F

def case(x):
    pc = torch.tensor(x["policy_chosen"], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor(x["policy_rejected"], dtype=torch.float64, requires_grad=True)
    rc = torch.tensor(x["ref_chosen"], dtype=torch.float64)
    rr = torch.tensor(x["ref_rejected"], dtype=torch.float64)
    beta, eps = x["beta"], x["label_smoothing"]
    logits = (pc - pr) - (rc - rr)
    if x["kind"] == "sigmoid":
        losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    elif x["kind"] == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    elif x["kind"] == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        raise SystemExit("unknown loss " + x["kind"])
    loss = losses.mean()
    loss.backward()
    return {"loss": loss.item(), "d_chosen": pc.grad.tolist(), "d_rejected": pr.grad.tolist()}


json.dump([case(x) for x in json.load(sys.stdin)], sys.stdout)
