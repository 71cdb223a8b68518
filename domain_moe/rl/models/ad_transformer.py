"""The Algorithm Distillation transformer with T2MIR's MoE in its last block (Wu et al., NeurIPS 2025)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.rl.models.dense_ffn import DenseFFN, matched_dense_hidden
from domain_moe.rl.models.t2mir_layer import T2MIRLayer

__all__ = ["LAST_FFNS", "TOKEN_LAYOUTS", "ADTransformer"]

#: What the last block's FFN is: the paper's model, its ablations and the two dense AD baselines.
LAST_FFNS = ("t2mir", "token_only", "task_only", "dense", "dense_matched")

#: ``"sar"``: separate state, action and reward tokens (T2MIR-AD); ``"step"``: one token per step holding
#: ``(s_t, a_{t-1}, r_{t-1})``.
TOKEN_LAYOUTS = ("sar", "step")


class _Block(nn.Module):
    """Pre-norm causal self-attention block; its FFN is injected."""

    def __init__(self, d_model: int, num_heads: int, ffn: nn.Module, dropout: float, dd: dict) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln1 = nn.LayerNorm(d_model, **dd)
        self.qkv = nn.Linear(d_model, 3 * d_model, **dd)
        self.proj = nn.Linear(d_model, d_model, **dd)
        self.ln2 = nn.LayerNorm(d_model, **dd)
        self.ffn = ffn
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        for m in (self.ln1, self.qkv, self.proj, self.ln2, self.ffn):
            m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.dropout(self.proj(att.transpose(1, 2).reshape(batch, length, width)))
        return x + self.dropout(self.ffn(self.ln2(x)))


class ADTransformer(nn.Module):
    """Causal transformer over interleaved (state, action, reward) tokens that predicts each step's action.

    Algorithm Distillation (Laskin et al., ICLR 2023) as used by T2MIR-AD (Wu et al., "Mixture-of-Experts
    Meets In-Context Reinforcement Learning", NeurIPS 2025): each modality has its own 2-layer MLP embedder,
    the tokens ``s_1, a_1, r_1, s_2, ...`` get a learned in-episode timestep embedding (shared by the three
    tokens of a step) plus a token-type embedding, go through pre-norm causal blocks, and the outputs at the
    state tokens give the action: logits for discrete actions, a tanh mean and a log-std for continuous ones.

    With ``token_layout="step"`` each step is one token, the sum of the embeddings of ``s_t``, ``a_{t-1}``
    and ``r_{t-1}`` (zeros before the first step): a sequence three times shorter, in which a rewarded
    transition and the cell it reached share a token. The action of step ``t`` is still read where only
    the past is visible.

    Only the last block's FFN varies (``last_ffn``): ``"t2mir"`` (:class:`T2MIRLayer`), its ablations
    ``"token_only"`` and ``"task_only"``, ``"dense"`` (``d_hidden``, the AD baseline) and
    ``"dense_matched"`` (the width with the active parameters of the T2MIR layer, the control that shows a
    gain is due to MoE rather than width). The other blocks keep a dense FFN of width ``d_hidden``.

    Args:
        state_dim: state feature width ``S``.
        action_dim: action width ``A`` (the number of actions when discrete).
        discrete_actions: categorical (``True``) or Gaussian (``False``) action head.
        max_episode_steps: episode length ``T`` (size of the timestep embedding).
        max_context_steps: longest context ``N`` in steps (``3 N`` tokens).
        d_model: width ``D``.
        num_layers: transformer blocks.
        num_heads: attention heads.
        d_hidden: dense FFN width (default ``4 D``).
        last_ffn: one of :data:`LAST_FFNS`.
        num_experts: token-MoE experts.
        num_task_experts: task-MoE experts.
        top_k: experts per token in both MoEs.
        expert_hidden: hidden width of each expert (default ``2 D``).
        task_routing: the task router's input (see :class:`T2MIRLayer`).
        balance_weight: weight of the token-MoE balance losses.
        ema_tau: EMA step of the target task gate.
        dropout: dropout on embeddings, attention output and FFN output.
        token_layout: one of :data:`TOKEN_LAYOUTS`.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - states: ``[B, N, S]``
        - actions: ``[B, N, A]`` (one-hot for discrete actions)
        - rewards: ``[B, N]``
        - timesteps: ``[B, N]`` int64 in ``[0, T)``
        - output: ``[B, N, A]`` (logits) or ``[B, N, 2A]`` (tanh mean, log-std)

    Example:
        >>> model = ADTransformer(state_dim=4, action_dim=5, max_episode_steps=10, max_context_steps=20, d_model=16)
        >>> steps = torch.arange(20).remainder(10).expand(2, 20)
        >>> out = model(torch.randn(2, 20, 4), torch.zeros(2, 20, 5), torch.zeros(2, 20), steps)
        >>> out.shape
        torch.Size([2, 20, 5])
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        discrete_actions: bool = True,
        max_episode_steps: int = 15,
        max_context_steps: int = 60,
        d_model: int = 32,
        num_layers: int = 2,
        num_heads: int = 2,
        d_hidden: int | None = None,
        last_ffn: str = "t2mir",
        num_experts: int = 6,
        num_task_experts: int = 8,
        top_k: int = 2,
        expert_hidden: int | None = None,
        task_routing: str = "causal_mean",
        balance_weight: float = 0.1,
        ema_tau: float = 0.005,
        dropout: float = 0.0,
        token_layout: str = "sar",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if token_layout not in TOKEN_LAYOUTS:
            raise ValueError(f"ADTransformer: token_layout must be one of {TOKEN_LAYOUTS}, got {token_layout!r}")
        self.token_layout = token_layout
        for name, value in (
            ("state_dim", state_dim),
            ("action_dim", action_dim),
            ("max_episode_steps", max_episode_steps),
            ("max_context_steps", max_context_steps),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ADTransformer: {name} must be a positive int, got {value!r}")
        if last_ffn not in LAST_FFNS:
            raise ValueError(f"ADTransformer: last_ffn must be one of {LAST_FFNS}, got {last_ffn!r}")
        if d_model % num_heads:
            raise ValueError(f"ADTransformer: d_model={d_model} must be divisible by num_heads={num_heads}")
        dd = {"device": device, "dtype": dtype}
        self.state_dim, self.action_dim, self.discrete_actions = state_dim, action_dim, bool(discrete_actions)
        self.max_episode_steps, self.max_context_steps = max_episode_steps, max_context_steps
        self.d_model, self.last_ffn = d_model, last_ffn
        d_hidden = 4 * d_model if d_hidden is None else d_hidden
        expert_hidden = 2 * d_model if expert_hidden is None else expert_hidden

        def embedder(width: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(width, d_model, **dd), nn.LeakyReLU(), nn.Linear(d_model, d_model, **dd))

        self.embed_state, self.embed_action, self.embed_reward = embedder(state_dim), embedder(action_dim), embedder(1)
        self.timestep = nn.Embedding(max_episode_steps, d_model, **dd)
        self.token_type = nn.Embedding(3, d_model, **dd)
        self.dropout = nn.Dropout(dropout)
        blocks = [
            _Block(d_model, num_heads, DenseFFN(d_model, d_hidden, dropout=dropout, **dd), dropout, dd)
            for _ in range(num_layers - 1)
        ]
        if last_ffn == "dense":
            last: nn.Module = DenseFFN(d_model, d_hidden, dropout=dropout, **dd)
        elif last_ffn == "dense_matched":
            last = DenseFFN(d_model, matched_dense_hidden(d_model, expert_hidden, top_k), dropout=dropout, **dd)
        else:
            last = T2MIRLayer(
                d_model,
                num_experts,
                num_task_experts,
                top_k,
                expert_hidden,
                task_routing,
                balance_weight,
                ema_tau,
                token_moe=last_ffn != "task_only",
                task_moe=last_ffn != "token_only",
                dropout=dropout,
                **dd,
            )
        blocks.append(_Block(d_model, num_heads, last, dropout, dd))
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = nn.LayerNorm(d_model, **dd)
        self.head = nn.Linear(d_model, action_dim if self.discrete_actions else 2 * action_dim, **dd)

    def reset_parameters(self) -> None:
        """Re-initialise every layer (the EMA task gate restarts as a copy of the online gate)."""
        inside = {id(m) for layer in self.t2mir_layers() for m in layer.modules()}
        for module in self.modules():
            if module is not self and id(module) not in inside and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        # Last, and as a whole: the layer copies its freshly initialised gate into the EMA gate.
        for layer in self.t2mir_layers():
            layer.reset_parameters()

    def t2mir_layers(self) -> list[T2MIRLayer]:
        """The model's T2MIR layers (empty for the dense baselines)."""
        return [m for m in self.modules() if isinstance(m, T2MIRLayer)]

    def contrastive_loss(self) -> Tensor | None:
        """Sum of the T2MIR layers' contrastive task-routing losses of the last call (``None`` if none)."""
        terms = [t for layer in self.t2mir_layers() if (t := layer.contrastive_loss()) is not None]
        return torch.stack(terms).sum() if terms else None

    def ema_update(self) -> None:
        """Move every EMA task gate toward its online gate (once per optimizer step)."""
        for layer in self.t2mir_layers():
            layer.ema_update()

    def _check(self, states: Tensor, actions: Tensor, rewards: Tensor, timesteps: Tensor) -> None:
        if states.dim() != 3 or states.shape[-1] != self.state_dim:
            raise ValueError(
                f"ADTransformer: states must be [B, N, state_dim={self.state_dim}], got {tuple(states.shape)}"
            )
        batch, steps = states.shape[:2]
        if steps > self.max_context_steps:
            raise ValueError(
                f"ADTransformer: context of {steps} steps is longer than max_context_steps={self.max_context_steps}"
            )
        if actions.shape != (batch, steps, self.action_dim):
            raise ValueError(
                f"ADTransformer: actions must be [B, N, action_dim] = [{batch}, {steps}, {self.action_dim}], "
                f"got {tuple(actions.shape)}"
            )
        if rewards.shape != (batch, steps):
            raise ValueError(f"ADTransformer: rewards must be [B, N] = [{batch}, {steps}], got {tuple(rewards.shape)}")
        if timesteps.shape != (batch, steps) or timesteps.dtype != torch.long:
            raise ValueError(
                f"ADTransformer: timesteps must be int64 [B, N] = [{batch}, {steps}], got {timesteps.dtype} "
                f"{tuple(timesteps.shape)}"
            )

    def forward(self, states: Tensor, actions: Tensor, rewards: Tensor, timesteps: Tensor) -> Tensor:
        """Action logits (or Gaussian parameters) at every state token; see the class docstring."""
        self._check(states, actions, rewards, timesteps)
        if timesteps.numel() and (timesteps.min() < 0 or timesteps.max() >= self.max_episode_steps):
            raise ValueError(f"ADTransformer: timesteps must lie in [0, max_episode_steps={self.max_episode_steps})")
        batch, steps = states.shape[:2]
        types = self.token_type.weight
        time = self.timestep(timesteps)
        if self.token_layout == "step":
            prev_actions = F.pad(actions[:, :-1], (0, 0, 1, 0))
            prev_rewards = F.pad(rewards[:, :-1], (1, 0))
            x = (
                self.embed_state(states)
                + self.embed_action(prev_actions)
                + self.embed_reward(prev_rewards.unsqueeze(-1))
                + types[0]
                + time
            )
        else:
            tokens = torch.stack(
                [
                    self.embed_state(states) + types[0],
                    self.embed_action(actions) + types[1],
                    self.embed_reward(rewards.unsqueeze(-1)) + types[2],
                ],
                dim=2,
            ) + time.unsqueeze(2)
            x = tokens.reshape(batch, 3 * steps, self.d_model)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        state_out = x if self.token_layout == "step" else x[:, 0::3]
        out = self.head(self.ln_f(state_out))
        if self.discrete_actions:
            return out
        mean, log_std = out.chunk(2, dim=-1)
        return torch.cat([torch.tanh(mean), log_std.clamp(-5.0, 1.0)], dim=-1)
