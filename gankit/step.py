"""The GAN update: one generator update and the discriminator updates before it. Top to bottom:

    for each of schedule(step):   real batch, fresh noise z, fake = G(z)    (the loss's or regularizers' schedule)
                                  D loss on (D(real), D(fake.detach())) + regularizer penalties; D update;
                                  regularizers act after the update (weight clipping)
    generator update:             the last fake batch again (generator_noise = "reuse", the article's DCGAN)
                                  or a fresh one ("fresh", the WGAN reference); D frozen: G loss on D(fake),
                                  and on D(last real batch) for losses that ask for it (relativistic ones)

A conditional run (docs/conditional.md) draws each real batch with its labels; the fakes of that step are
G(z, labels), D scores D(x, labels), and the generator update uses the last step's labels. Losses that declare
discriminator_outputs get the discriminator's extra outputs and the labels as keywords.

With --augment (docs/augmentation.md) D sees augmented batches wherever it scores real or fake ones, in both
updates; the regularizers get the augmented batches, and the augmentations observe D's scores on the reals.
"""
from __future__ import annotations

import torch

from gankit.augmenting import Augmentations
from gankit.build import Run
from gankit.conditioning import ScoresOnly, discriminate, generate
from gankit.precision import autocast, backward_and_step, batch_to_channels_last


def train_step(run: Run, step: int) -> dict[str, torch.Tensor]:
    """One generator update and its discriminator updates; returns detached statistics (no host sync)."""
    config, device, distributed = run.config, run.device, run.distributed
    networks, loss, regularizers = run.networks, run.objective.loss, run.objective.regularizers
    G, D, discriminator = networks.step_generator, networks.step_discriminator, networks.discriminator
    optimizers, batches = run.optimizers, run.data.batches
    d_steps = run.objective.schedule(step)
    fresh_noise = config.generator_noise == "fresh"
    conditional, outputs = run.data.num_classes is not None, bool(run.objective.discriminator_outputs)
    augmentations = run.objective.augmentations
    for d_step in range(d_steps):
        real, labels = batches.next_with_labels() if conditional else (batches.next(), None)
        if networks.channels_last:
            real = batch_to_channels_last(real)
        z = distributed.draw_noise(real.shape[0], config.z_dim, device=device, generator=run.noise)
        reused = d_step == d_steps - 1 and not fresh_noise
        # Only a fake batch the generator update reuses needs a graph.
        with torch.set_grad_enabled(reused), autocast(config.precision, device):
            fake = generate(G, z, labels)
        with autocast(config.precision, device):
            real, seen_fake = _augmented(augmentations, real), _augmented(augmentations, fake.detach())
            real_scores, real_outputs = discriminate(D, real, labels, outputs=outputs)
            fake_scores, fake_outputs = discriminate(D, seen_fake, labels, outputs=outputs)
            if outputs:
                d_loss = loss.discriminator_loss(
                    real_scores, fake_scores, real_outputs=real_outputs, fake_outputs=fake_outputs, labels=labels
                )
            else:
                d_loss = loss.discriminator_loss(real_scores, fake_scores)
            # The plain module: penalties may differentiate twice, which DDP and compile do not support.
            penalized = ScoresOnly(discriminator, labels, outputs=outputs) if conditional or outputs else discriminator
            for regularizer in regularizers:
                penalty = regularizer.penalty(
                    discriminator=penalized, real=real, fake=seen_fake, real_scores=real_scores,
                    fake_scores=fake_scores, step=step,
                )
                if penalty is not None:
                    d_loss = d_loss + penalty
        optimizers.optimizer_d.zero_grad(set_to_none=True)
        backward_and_step(d_loss, optimizers.optimizer_d, optimizers.scaler_d, config.grad_clip_norm)
        for regularizer in regularizers:
            regularizer.after_discriminator_step(discriminator=discriminator)
        if augmentations is not None:
            augmentations.observe(real_scores)

    if fresh_noise:
        z = distributed.draw_noise(config.batch_size, config.z_dim, device=device, generator=run.noise)
        with autocast(config.precision, device):
            fake = generate(G, z, labels)  # the fresh fakes take the last real batch's labels
    # Generator update; D's weights are frozen so no gradient is computed for them.
    discriminator.requires_grad_(False)
    with autocast(config.precision, device):
        g_loss = _generator_loss(run, fake, real, labels, outputs=outputs)
    optimizers.optimizer_g.zero_grad(set_to_none=True)
    backward_and_step(g_loss, optimizers.optimizer_g, optimizers.scaler_g, config.grad_clip_norm)
    if networks.ema is not None:
        networks.ema.update(networks.generator)
    discriminator.requires_grad_(True)

    with torch.no_grad():
        stats = {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "score_real": real_scores.detach().mean(),
            "score_fake": fake_scores.detach().mean(),
        }
        stats.update({k: v.detach() for k, v in loss.statistics(real_scores.detach(), fake_scores.detach()).items()})
        if augmentations is not None:
            stats.update(augmentations.statistics(device))
    return stats


def _generator_loss(run: Run, fake: torch.Tensor, real: torch.Tensor, labels: torch.Tensor | None, *,
                    outputs: bool) -> torch.Tensor:
    """The generator's loss on the frozen discriminator's view of ``fake`` (with the labels they were made for)."""
    frozen, loss = run.networks.frozen_discriminator, run.objective.loss
    fake_scores, fake_outputs = discriminate(frozen, _augmented(run.objective.augmentations, fake), labels,
                                             outputs=outputs)
    keywords = {"fake_outputs": fake_outputs, "labels": labels} if outputs else {}
    if run.objective.generator_step_scores_real:
        # Scores of the current D on the batch its last update saw (augmented with --augment); only for losses
        # that compare with them.
        keywords["real_scores"] = discriminate(frozen, real, labels, outputs=outputs)[0]
    return loss.generator_loss(fake_scores, **keywords)


def _augmented(augmentations: Augmentations | None, batch: torch.Tensor) -> torch.Tensor:
    """What the discriminator sees of ``batch``: the batch itself without --augment."""
    return batch if augmentations is None else augmentations(batch)
