"""Run in a fresh process by test_state_dict_resumes_in_a_new_process: load the
optimizers saved at step 50 (weights_only=True), run the last 50 steps, save
the params."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from descentlab import optim  # noqa: E402
from tests.optim.problems import make_grads, run, shapes_for  # noqa: E402
from tests.optim.refs import REFERENCES  # noqa: E402


def main(src: str, dst: str) -> None:
    saved = torch.load(src, weights_only=True)
    out = {}
    for name, item in saved.items():
        params = item["params"]
        opt = optim.create(name, [{"params": params[:2]}, {"params": params[2:]}], **item["hparams"])
        opt.load_state_dict(item["optimizer"])
        run(opt, params, make_grads(shapes_for(REFERENCES[name])), start=50)
        opt.eval()
        out[name] = params
    torch.save(out, dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
