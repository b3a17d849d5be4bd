"""Fixtures of the performance tests: the follower's and the partner API's, reused."""

from tests.follower.conftest import (  # noqa: F401 - fixtures, registered by import
    make_follower_program,
    make_master_client,
    master_api,
    master_client,
    transactions_program,
)
from tests.partner.conftest import (  # noqa: F401 - fixtures, registered by import
    burn_rule,
    earn_rule,
    generous_rate_limit,
    make_partner,
    make_rule,
    partner,
    public_dns,
    token,
)
