"""Request bodies the API validates with pydantic (a malformed one is a 422, never a 500)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

LabelName = Literal["fg", "bg", "transition", "unknown", "foreground", "background"]


class LabelItem(BaseModel):
    """One answer: a current proposal (``index``) or any box, and what is in it."""

    model_config = ConfigDict(extra="forbid")

    index: StrictInt | None = Field(None, ge=0, description="index into the session's current proposals")
    box: list[StrictInt] | None = Field(
        None, min_length=4, max_length=4, description="[y0, x0, y1, x1], full-resolution pixels"
    )
    point: list[StrictInt] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[y, x], full-resolution pixels: a click, labelling the square of "
        "max(8, 2% of the long side) pixels centred there",
    )
    label: LabelName = Field(description="fg, bg or transition; unknown erases earlier labels in the box")

    @model_validator(mode="after")
    def _one_target(self):
        if sum(t is not None for t in (self.index, self.box, self.point)) != 1:
            raise ValueError("give exactly one of index, box or point")
        return self

    def pair(self) -> tuple:
        """The ``(target, label)`` pair :func:`dugray.session.apply_user_labels` takes."""
        if self.index is not None:
            return (self.index, self.label)
        return (tuple(self.box if self.box is not None else self.point), self.label)


class LabelRequest(BaseModel):
    """``{"labels": [{"index": 0, "label": "fg"}, {"box": [y0, x0, y1, x1], "label": "bg"},
    {"point": [y, x], "label": "bg"}]}``."""

    model_config = ConfigDict(extra="forbid")

    labels: list[LabelItem] = Field(min_length=1, max_length=1024)


class SessionPatch(BaseModel):
    """``{"solve": true | false}``: switch the uncertainty-guided solve of a session."""

    model_config = ConfigDict(extra="forbid")

    solve: StrictBool = Field(description="show the solved matte (true) or the network's fused matte (false)")
