"""The whole DPO step against trl 1.16 (the test oracle): on a fixed batch, llmlab's `DPOTrainer` loss and its
gradient with respect to every LoRA parameter equal trl's `DPOTrainer.compute_loss` on the `transformers`
LlamaForCausalLM with the same weights and the same LoRA adapter loaded by `peft` (reference = adapters off in
both)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from align_helpers import toy_pairs, write_jsonl

from llmlab.align.dpo_trainer import DPOTrainer
from llmlab.data.preference import PairStream, load_preference_pairs
from llmlab.peft import LoraConfig, get_peft_model, save_adapter
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig

pytest.importorskip("trl")
pytest.importorskip("peft")

TARGETS = ["q_proj", "v_proj", "down_proj"]


def _hf_tokenizer(tokenizer, tmp_path: Path):  # noqa: ANN001, ANN202
    from transformers import PreTrainedTokenizerFast

    tokenizer.save(tmp_path / "tok")
    return PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tok" / "tokenizer.json"), eos_token="<|endoftext|>",
                                   pad_token="<|pad|>")  # fmt: skip


@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize(("loss", "beta"), [("sigmoid", 0.1), ("ipo", 0.5), ("hinge", 0.3)])
def test_dpo_loss_and_lora_gradient_equal_trl_dpo_trainer(tmp_path, tokenizer, loss: str, beta: float, pack) -> None:
    from align_helpers import tiny_llama
    from peft import PeftModel
    from transformers import LlamaForCausalLM
    from trl import DPOConfig
    from trl import DPOTrainer as TrlDPOTrainer

    from llmlab.models.llama import save_hf_llama

    torch.manual_seed(0)
    model = tiny_llama(tokenizer.vocab_size)
    model.config.dropout = 0.0
    save_hf_llama(model, tmp_path / "hf-base")  # the base weights, before any adapter
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False))
    save_adapter(model, tmp_path / "adapter")
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf-base")
    peft_model = PeftModel.from_pretrained(hf, tmp_path / "adapter", is_trainable=True)

    pairs = load_preference_pairs(write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(6, seed=2)), tokenizer)
    assert (
        len({len(p.prompt_ids + p.chosen_ids) for p in pairs} | {len(p.prompt_ids + p.rejected_ids) for p in pairs}) > 1
    )
    pad = tokenizer.pad_id

    # llmlab: the real trainer's batch_loss on the collated batch (reference = adapters disabled)
    from llmlab.align.reference import ReferencePolicy

    ref = ReferencePolicy(model)
    assert ref.mode == "adapters"
    trainer = DPOTrainer(
        model, PairStream(pairs, 6), TrainConfig(device="cpu", progress=False, tensorboard=False),
        OptimConfig(lr=1e-3), ScheduleConfig(), tmp_path / "run", loss={"loss": loss, "beta": beta}, pad_id=pad,
        reference=ref, save_checkpoints=False, pack=pack,
    )  # fmt: skip
    batch = trainer.collate(pairs)
    assert ("packed" in batch) == pack
    ours = trainer.batch_loss(batch)
    ours.backward()
    our_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    # trl: DPOTrainer.compute_loss on the same pairs, collated by trl's own collator
    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=beta, loss_type=[loss], report_to=[], use_cpu=True,
                     max_length=None, per_device_train_batch_size=6, bf16=False, fp16=False)  # fmt: skip
    dummy = __import__("datasets").Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}])
    trl = TrlDPOTrainer(peft_model, args=args, train_dataset=dummy, processing_class=_hf_tokenizer(tokenizer, tmp_path))
    # trl keeps a copy of a pre-loaded adapter as its reference ("ref"); without it trl, like llmlab, takes the
    # reference with the adapters disabled (what both do for a freshly added adapter, the usual case)
    trl.model.delete_adapter("ref")
    examples = [{"prompt_ids": p.prompt_ids, "chosen_ids": p.chosen_ids, "rejected_ids": p.rejected_ids} for p in pairs]
    inputs = trl.data_collator(examples)
    trl.model.train()
    theirs = trl.compute_loss(trl.model, inputs)
    theirs.backward()
    their_grads = {
        n.removeprefix("base_model.model.").replace(".default", ""): p.grad
        for n, p in trl.model.named_parameters() if p.requires_grad
    }  # fmt: skip

    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-5, abs=1e-6)
    assert our_grads.keys() == their_grads.keys() and len(our_grads) == 2 * 2 * len(TARGETS)
    for name, g in our_grads.items():
        torch.testing.assert_close(g, their_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert any(g.abs().max() > 1e-4 for g in our_grads.values())  # a real gradient, not zeros on both sides
    metrics = trainer.step_metrics()
    logged = trl._metrics["train"]
    assert metrics["rewards_accuracy"] == pytest.approx(logged["rewards/accuracies"][-1])
    assert metrics["rewards_margin"] == pytest.approx(logged["rewards/margins"][-1], rel=1e-3, abs=1e-5)
    assert metrics["logps_chosen"] == pytest.approx(logged["logps/chosen"][-1], rel=1e-5)
