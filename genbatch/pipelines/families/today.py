"""The families of today's open models, one module each (what each call needs is there)."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family
from genbatch.pipelines.families.chroma import CHROMA
from genbatch.pipelines.families.cogview4 import COGVIEW4
from genbatch.pipelines.families.flux2 import FLUX2
from genbatch.pipelines.families.flux_kontext import FLUX_KONTEXT
from genbatch.pipelines.families.hidream import HIDREAM
from genbatch.pipelines.families.hunyuan_image import HUNYUAN_IMAGE
from genbatch.pipelines.families.kolors import KOLORS
from genbatch.pipelines.families.lumina2 import LUMINA2
from genbatch.pipelines.families.qwen_image import QWEN_IMAGE
from genbatch.pipelines.families.qwen_image_edit import QWEN_IMAGE_EDIT
from genbatch.pipelines.families.sana_sprint import SANA_SPRINT
from genbatch.pipelines.families.z_image import Z_IMAGE

TODAY: tuple[Family, ...] = (
    QWEN_IMAGE,
    QWEN_IMAGE_EDIT,
    FLUX_KONTEXT,
    FLUX2,
    Z_IMAGE,
    CHROMA,
    HIDREAM,
    LUMINA2,
    COGVIEW4,
    SANA_SPRINT,
    KOLORS,
    HUNYUAN_IMAGE,
)
