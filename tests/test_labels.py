import numpy as np
import pytest

from audioscene import labels
from audioscene.errors import InputError


def test_audioset_has_527_labels_in_file_order():
    table = labels.audioset()
    assert len(table) == 527
    assert table.names[0] == "Speech" and table.mids[0] == "/m/09x0r"
    assert table.names[526] == "Field recording"


@pytest.mark.parametrize("index", [0, 74, 81, 300, 526])
def test_round_trips(index):
    table = labels.audioset()
    assert table.index(table.names[index]) == index
    assert table.index_of_mid(table.mids[index]) == index


def test_unknown_name_lists_close_matches():
    with pytest.raises(labels.UnknownLabelError, match="unknown label 'Dogg'.*'Dog'"):
        labels.audioset().index("Dogg")
    with pytest.raises(labels.UnknownLabelError, match="unknown label mid"):
        labels.audioset().index_of_mid("/m/nope")


def test_multi_hot():
    target = labels.dcase2018().multi_hot(["Cat", "Speech"])
    assert target.dtype == np.float32 and target.sum() == 2
    assert target[labels.dcase2018().index("Cat")] == 1


def test_label_set_rejects_duplicates():
    with pytest.raises(ValueError, match="unique"):
        labels.LabelSet(("a", "a"))


def test_ontology_parents_and_children():
    onto = labels.ontology()
    assert len(onto) == 632
    dog = labels.audioset().mids[labels.audioset().index("Dog")]
    parents = [p.name for p in onto.parents(dog)]
    assert "Domestic animals, pets" in parents
    assert "Bark" in [c.name for c in onto.children(dog)]
    for parent in onto.parents(dog):
        assert dog in parent.child_ids
    with pytest.raises(labels.UnknownLabelError):
        onto.children("/m/nope")


def test_dcase_mapping_resolves_to_existing_labels():
    mapping = labels.DCASE2018_AUDIOSET_NAMES
    assert tuple(mapping) == labels.dcase2018().names and len(mapping) == 10
    audioset = labels.audioset()
    indices = {cls: [audioset.index(name) for name in names] for cls, names in mapping.items()}  # all exist
    assert [audioset.names[i] for i in indices["Electric_shaver_toothbrush"]] == [
        "Electric shaver, electric razor", "Electric toothbrush"]
    assert [audioset.names[i] for i in indices["Dog"]] == ["Dog"] and indices["Cat"] == [81]
    assert all(0 <= i < 527 for found in indices.values() for i in found)


def test_class_mappings_paper_broad_and_file(tmp_path):
    import json

    from audioscene.labels import DCASE2018_AUDIOSET_NAMES, class_mapping

    assert class_mapping("paper") == DCASE2018_AUDIOSET_NAMES
    broad = class_mapping("broad")
    assert set(broad) == set(DCASE2018_AUDIOSET_NAMES)
    for cls, names in DCASE2018_AUDIOSET_NAMES.items():
        assert set(names) <= set(broad[cls])  # broad only adds
    assert {"Meow", "Purr", "Hiss", "Caterwaul"} <= set(broad["Cat"])  # the ontology's children of Cat
    assert {"Bark", "Yip", "Howl", "Bow-wow", "Whimper (dog)"} <= set(broad["Dog"])
    assert {"Bathtub (filling or washing)", "Pour", "Trickle, dribble"} <= set(broad["Running_water"])
    assert not any("siren" in n.lower() for n in broad["Alarm_bell_ringing"])
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"Cat": ["Cat", "Meow"]}))
    assert class_mapping(str(path)) == {"Cat": ("Cat", "Meow")}
    path.write_text(json.dumps({"Cat": ["Kitty"]}))
    with pytest.raises(InputError, match="'Kitty' is not an AudioSet label name"):
        class_mapping(str(path))
    with pytest.raises(InputError, match="no such mapping file"):
        class_mapping("wide")
