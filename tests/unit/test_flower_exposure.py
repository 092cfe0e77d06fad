from pathlib import Path

import pytest

from app.config import ConfigError


def test_flower_needs_credentials_beyond_loopback():
    from app.config import Settings
    from tasks.flower import check_exposure

    open_settings = Settings(data_dir=Path("/nonexistent"), database_url="sqlite://", broker_url="redis://x")
    check_exposure(open_settings, "127.0.0.1")
    check_exposure(open_settings, "::1")
    for address in ("0.0.0.0", "10.0.0.5", "flower.example.org"):
        with pytest.raises(ConfigError, match="CONVHUB_OPERATOR_PASSWORD"):
            check_exposure(open_settings, address)
    check_exposure(open_settings.with_(operator_password="pw"), "0.0.0.0")
