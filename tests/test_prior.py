import json
import math

import numpy as np

from retriever_service.entity_linking import EntityIndex, mask_mention
from retriever_service.relation_prior import RelationPrior, relation_key
from retriever_service.retrieval import softmax_prior


def test_softmax_prior_sums_to_one_and_sharpens_with_small_tau():
    scores = [0.62, 0.60, 0.41]
    flat, sharp = softmax_prior(scores, 1.0), softmax_prior(scores, 0.02)
    assert math.isclose(sum(flat), 1.0) and math.isclose(sum(sharp), 1.0)
    assert max(flat) - min(flat) < 0.1  # plain cosines give a nearly flat softmax
    assert sharp[0] > 0.7 and sharp[0] > sharp[1] > sharp[2]
    assert softmax_prior([], 0.1) == []
    assert softmax_prior([1000.0, 0.0], 0.001) == [1.0, 0.0]  # no overflow


def test_relation_key_direction():
    fact = {"subject": "Big", "relation": "directed_by", "object": "Penny Marshall"}
    assert relation_key(fact, {"Big"}) == "directed_by"
    assert relation_key(fact, {"Penny Marshall"}) == "directed_by^-1"


def test_relation_prior_fit_predicts_and_reloads(tmp_path):
    rng = np.random.default_rng(0)
    centers = np.eye(4, 8, dtype=np.float32)
    vectors = np.concatenate([c + 0.1 * rng.normal(size=(30, 8)) for c in centers[:3]]).astype(np.float32)
    labels = [{"a"}] * 30 + [{"b"}] * 30 + [{"a", "c"}] * 30  # a question may ask for two keys
    prior = RelationPrior.fit(vectors, labels, weight=0.5, temperature=1.0)
    log_p = prior.log_probs(centers[:3])  # (3, 3)
    np.testing.assert_allclose(np.exp(log_p).sum(axis=1), 1.0, rtol=1e-5)
    assert log_p[0].argmax() == 0 and log_p[1].argmax() == 1
    np.testing.assert_allclose(np.exp(log_p[2, [0, 2]]), 0.5, atol=0.05)  # the target split evenly over a, c
    assert prior.log_prob("a", log_p[0]) == log_p[0, 0] > prior.log_prob("b", log_p[0]) == log_p[0, 1]
    assert prior.log_prob("never-seen", log_p[0]) == log_p[0].min()  # an unseen key gets the lowest
    path = prior.save(tmp_path / "prior.npz")
    loaded = RelationPrior.load(path)
    assert loaded.keys == prior.keys and loaded.weight == 0.5
    np.testing.assert_array_equal(loaded.log_probs(centers), prior.log_probs(centers))
    assert RelationPrior.load(tmp_path / "missing.npz") is None


def test_relation_prior_of_an_older_format_is_not_used(tmp_path, caplog):
    old = tmp_path / "old.npz"  # format 1: centroids of unmasked question vectors
    np.savez(
        old, centroids=np.eye(2, 4), meta=np.array(json.dumps({"keys": ["a", "b"], "temperature": 0.05, "weight": 0.3}))
    )
    assert RelationPrior.load(old) is None
    assert "refit it" in caplog.text


def test_mask_mention_hides_the_linked_entity():
    entities = EntityIndex()
    entities.update([{"subject": "Runaway", "relation": "directed_by", "object": "Michael Crichton"}])
    question = "Who directed the movie [Runaway]?"
    assert mask_mention(question, entities.link(question)[0]) == "who directed the movie X"
    assert mask_mention("who directed runaway", entities.link("who directed runaway")[0]) == "who directed X"
    assert mask_mention("Who directed Jaws?", None) == "who directed jaws"
