import os
from pathlib import Path

import pytest

from streams.settings import Settings, SettingsError, reference_table


def test_defaults_run_embedded_under_var():
    s = Settings.from_env({})
    assert s.data_dir == Path("var/data") and s.device == "auto" and s.scenarios == ("home", "search", "video")


def test_env_overrides_are_typed():
    s = Settings.from_env({"IU_SEED": "5", "IU_SCENARIOS": "feed, cart", "IU_MODEL_DIR": "/m"})
    assert s.seed == 5 and s.scenarios == ("feed", "cart") and s.model_dir == Path("/m")


@pytest.mark.parametrize(("name", "value"), [("IU_SEED", "x"), ("IU_SCENARIOS", " , "), ("IU_DIVERSITY", "2"),
                                             ("IU_BROKER_PROFILE", "redpanda"), ("IU_STORE", "redis://")])
def test_bad_values_name_the_variable_and_say_what_to_do(name, value):
    with pytest.raises(SettingsError, match=name) as e:
        Settings.from_env({name: value})
    assert "; default " in str(e.value) and "Fix or unset it" in str(e.value)


def test_embedded_profile_follows_the_bootstrap_unless_told():
    assert Settings.from_env({}).tansu
    assert not Settings.from_env({"IU_KAFKA_BOOTSTRAP": "kafka:9092"}).tansu
    assert Settings.from_env({"IU_KAFKA_BOOTSTRAP": "127.0.0.1:1", "IU_BROKER_PROFILE": "tansu"}).tansu


def test_readme_configuration_table_is_the_generated_one():
    readme = Path("README.md").read_text()
    begin = readme.index("\n", readme.index("<!-- settings:")) + 1
    assert readme[begin:readme.index("<!-- /settings -->")].strip() == reference_table(), \
        "README.md's settings table is stale: paste `iu config --defaults` between its markers"


def test_partial_batches_leave_a_core_to_the_event_loop():
    cores = len(os.sched_getaffinity(0))
    assert Settings.from_env({}).thread_budget == (max(1, cores - 1), cores)
    assert Settings.from_env({"IU_COMPUTE_THREADS": "3"}).thread_budget == (2, 3)
    assert Settings.from_env({"IU_COMPUTE_THREADS": "1"}).thread_budget == (1, 1)
    with pytest.raises(SettingsError, match="IU_COMPUTE_THREADS"):
        Settings.from_env({"IU_COMPUTE_THREADS": "-1"})
    with pytest.raises(SettingsError, match="IU_GIL_SWITCH_MS"):
        Settings.from_env({"IU_GIL_SWITCH_MS": "0"})
