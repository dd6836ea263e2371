"""The membership-inference attack works: on a model that memorised random sequences it tells members from
non-members, on a model that never saw either group it cannot; the loss it reads is the hand-computed one."""

import numpy as np
import pytest

from lmrec.data import IdMap, Interactions
from lmrec.errors import ConfigError
from lmrec.privacy import membership_attack, sequence_losses, shadow_attack
from lmrec.registry import create

N_ITEMS, LENGTH = 30, 8
OVERFIT = dict(dim=32, layers=1, heads=2, max_len=LENGTH, dropout=0.0, lr=1e-2, batch_size=16, epochs=120)


def random_users(n, seed):
    """``n`` users with random sequences: there is no pattern to learn, only sequences to memorise."""
    rng = np.random.default_rng(seed)
    seqs = [rng.choice(N_ITEMS, LENGTH, replace=False) for _ in range(n)]
    inter = Interactions(np.repeat(np.arange(n), LENGTH), np.concatenate(seqs), IdMap(range(n)), IdMap(range(N_ITEMS)),
                         time=np.tile(np.arange(LENGTH), n))
    return inter, seqs


@pytest.fixture(scope="module")
def memorised():
    members, member_seqs = random_users(80, seed=1)
    return create("sasrec", **OVERFIT).fit(members), member_seqs


def test_the_attack_finds_the_members_of_a_model_that_memorised_them(memorised):
    model, member_seqs = memorised
    _, outsiders = random_users(80, seed=2)
    result = membership_attack(sequence_losses(model, member_seqs, N_ITEMS),
                               sequence_losses(model, outsiders, N_ITEMS))
    assert result.auc > 0.8 and (result.members, result.non_members) == (80, 80)


def test_no_signal_when_neither_group_was_trained_on():
    trained_on, _ = random_users(80, seed=3)
    model = create("sasrec", **OVERFIT).fit(trained_on)
    _, a = random_users(100, seed=4)
    _, b = random_users(100, seed=5)
    assert abs(membership_attack(sequence_losses(model, a, N_ITEMS), sequence_losses(model, b, N_ITEMS)).auc - 0.5) < 0.12


def test_the_shadow_attack_learns_what_members_look_like_elsewhere(memorised):
    model, member_seqs = memorised
    pool, _ = random_users(120, seed=6)  # the attacker's own data: other users
    _, outsiders = random_users(80, seed=7)
    result = shadow_attack(lambda inter: create("sasrec", **OVERFIT).fit(inter), pool, model, member_seqs, outsiders)
    assert result.auc > 0.8 and result.accuracy > 0.7


def test_sequence_loss_is_the_next_item_cross_entropy():
    inter = Interactions(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]), IdMap(range(3)), IdMap(range(3)))
    pop = create("pop").fit(inter)  # scores 2, 1, 1 whatever the history
    log_norm = np.log(np.exp(2) + 2 * np.exp(1))
    losses = sequence_losses(pop, [np.array([2, 0, 1]), np.array([1, 0])], 3, positions=2)
    np.testing.assert_allclose(losses, [((log_norm - 2) + (log_norm - 1)) / 2, log_norm - 2])
    assert sequence_losses(pop, [np.array([2, 0, 1])], 3, positions=1)[0] == pytest.approx(log_norm - 1)
    with pytest.raises(ConfigError, match="nothing to predict"):
        sequence_losses(pop, [np.array([1])], 3)


def test_the_attack_fails_against_the_same_training_under_differential_privacy(memorised):
    """Same data, model and epochs as the memorising run, trained with DP-SGD at epsilon = 1 (user level)."""
    model, member_seqs = memorised
    _, outsiders = random_users(80, seed=2)
    private = create("sasrec", **OVERFIT, privacy={"epsilon": 1.0}).fit(random_users(80, seed=1)[0])
    attack = membership_attack(sequence_losses(private, member_seqs, N_ITEMS),
                               sequence_losses(private, outsiders, N_ITEMS))
    exposed = membership_attack(sequence_losses(model, member_seqs, N_ITEMS),
                                sequence_losses(model, outsiders, N_ITEMS))
    assert private.privacy_["epsilon"] <= 1.0 and exposed.auc > 0.8 and attack.auc < 0.65
