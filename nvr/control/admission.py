"""Who may hold how many control-socket connections at once. Pure bookkeeping.

One global cap protected nobody: an account listed nowhere could hold every slot and lock the
Director out. Now, per account (uid):

- the public (anyone not in `people:`): at most `public_per_account` connections each, and all
  public accounts together at most `public_pool`;
- staff, Elder Affairs and facilities: at most `per_account` each;
- the Director, the Assistant Director and the IT person: only the global cap, and the last
  `reserved` slots of it are theirs alone.

So no public account, and no crowd of them, can take the slots the Director needs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from nvr.config.model import Role

PRIVILEGED = frozenset({Role.director, Role.assistant_director, Role.it})


@dataclass
class Admission:
    max_connections: int = 64
    public_per_account: int = 4
    public_pool: int = 16
    per_account: int = 16
    reserved: int = 8  # of max_connections, for PRIVILEGED roles only
    _by_uid: Counter[int] = field(default_factory=Counter)
    _total: int = 0
    _public: int = 0

    def admit(self, uid: int, role: Role) -> str | None:
        """Take a slot, or say (one line) why not."""
        reserved = min(self.reserved, self.max_connections // 4)
        mine = self._by_uid[uid]
        if role is Role.public:
            if mine >= self.public_per_account:
                return (f"too many connections from your account at once (at most "
                        f"{self.public_per_account}); close some and try again")
            if self._public >= self.public_pool:
                return "too many connections from unlisted accounts at once; try again"
        elif role not in PRIVILEGED and mine >= self.per_account:
            return (f"too many connections from your account at once (at most "
                    f"{self.per_account}); close some and try again")
        limit = self.max_connections if role in PRIVILEGED else self.max_connections - reserved
        if self._total >= limit:
            return "nvr daemon is busy: too many connections at once; try again"
        self._by_uid[uid] += 1
        self._total += 1
        self._public += role is Role.public
        return None

    def release(self, uid: int, role: Role) -> None:
        self._by_uid[uid] -= 1
        if self._by_uid[uid] <= 0:
            del self._by_uid[uid]
        self._total -= 1
        self._public -= role is Role.public

    @property
    def total(self) -> int:
        return self._total
