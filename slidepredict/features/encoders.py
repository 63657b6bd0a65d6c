"""The built-in encoders. Adding one is one small function registered by name; nothing else changes.

Hub ids, timm keyword arguments, embedding sizes and normalisation follow each model
card. Revisions are pinned to a commit where one was verified, else the hub's ``main``.
"""

from __future__ import annotations

from slidepredict.features import stain_texture_spec
from slidepredict.features._registry import EncoderConfig, register_encoder

# timm's SwiGLU MLP, as the UNI2-h/Virchow model cards pass it. Resolved by name in the
# builder so this module stays import-light for `slidepredict encoders`.
_SWIGLU = {"mlp_layer": "swiglu_packed", "act_layer": "silu"}


@register_encoder("resnet50-trunc")
def resnet50_trunc() -> EncoderConfig:
    return EncoderConfig(
        name="resnet50-trunc",
        dim=1024,
        arch="resnet50",
        hf_hub_id="timm/resnet50.tv_in1k",
        truncate_after="layer3",
        license="BSD-3-Clause (torchvision ImageNet weights)",
        citation="He et al., CVPR 2016; Lu et al., Nat Biomed Eng 2021 (CLAM)",
        description="ImageNet ResNet-50 cut after layer 3 + average pool; the CLAM default",
    )


@register_encoder("lunit-vits16")
def lunit_vits16() -> EncoderConfig:
    return EncoderConfig(
        name="lunit-vits16",
        dim=384,
        arch="vit_small_patch16_224",
        hf_hub_id="1aurent/vit_small_patch16_224.lunit_dino",
        mean=(0.70322989, 0.53606487, 0.66096631),
        std=(0.21716536, 0.26081574, 0.20723464),
        license="Lunit non-commercial",
        citation="Kang et al., CVPR 2023 (Benchmarking self-supervised learning on pathology)",
        description="DINO ViT-S/16 trained on 19M TCGA tiles; small enough for CPUs",
    )


@register_encoder("kaiko-vits16")
def kaiko_vits16() -> EncoderConfig:
    return EncoderConfig(
        name="kaiko-vits16",
        dim=384,
        arch="vit_small_patch16_224",
        arch_kwargs={"dynamic_img_size": True},
        hf_hub_id="1aurent/vit_small_patch16_224.kaiko_ai_towards_large_pathology_fms",
        revision="48560ea39969fe44b7b2ab057de01484243a7d43",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        license="kaiko.ai non-commercial",
        citation="kaiko.ai et al., arXiv:2404.15217 (Towards large-scale training of pathology foundation models)",
        description="DINO ViT-S/16 trained on TCGA; small enough for CPUs",
    )


@register_encoder("uni")
def uni() -> EncoderConfig:
    return EncoderConfig(
        name="uni",
        dim=1024,
        arch="vit_large_patch16_224",
        arch_kwargs={"img_size": 224, "init_values": 1e-5, "dynamic_img_size": True},
        hf_hub_id="MahmoodLab/uni",
        license="CC-BY-NC-ND-4.0 (gated)",
        citation="Chen et al., Nature Medicine 2024 (UNI)",
        description="ViT-L/16 DINOv2 on Mass-100K",
    )


@register_encoder("uni2-h")
def uni2_h() -> EncoderConfig:
    return EncoderConfig(
        name="uni2-h",
        dim=1536,
        arch="vit_giant_patch14_224",
        arch_kwargs={
            "img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5,
            "embed_dim": 1536, "mlp_ratio": 2.66667 * 2, "no_embed_class": True, "reg_tokens": 8,
            "dynamic_img_size": True, **_SWIGLU,
        },
        hf_hub_id="MahmoodLab/UNI2-h",
        license="CC-BY-NC-ND-4.0 (gated)",
        citation="Chen et al., Nature Medicine 2024 (UNI); UNI2-h model card",
        description="ViT-H/14 with 8 registers, 200M+ tiles",
    )


@register_encoder("virchow2")
def virchow2() -> EncoderConfig:
    return EncoderConfig(
        name="virchow2",
        dim=2560,
        arch="vit_huge_patch14_224",
        arch_kwargs={
            "img_size": 224, "init_values": 1e-5, "mlp_ratio": 5.3375, "reg_tokens": 4,
            "global_pool": "", "dynamic_img_size": True, **_SWIGLU,
        },
        hf_hub_id="paige-ai/Virchow2",
        pooling="cls+mean",
        license="CC-BY-NC-ND-4.0 (gated)",
        citation="Zimmermann et al., arXiv:2408.00738 (Virchow2)",
        description="ViT-H/14 with 4 registers; class token + mean patch token (2 x 1280)",
    )


@register_encoder("h-optimus-0")
def h_optimus_0() -> EncoderConfig:
    return EncoderConfig(
        name="h-optimus-0",
        dim=1536,
        arch="vit_giant_patch14_reg4_dinov2",
        arch_kwargs={"img_size": 224, "init_values": 1e-5, "dynamic_img_size": False},
        hf_hub_id="bioptimus/H-optimus-0",
        revision="d7e1f8884c292f1ff581e4b5de73a2cf9f904967",
        mean=(0.707223, 0.578729, 0.703617),
        std=(0.211883, 0.230117, 0.177517),
        license="Apache-2.0",
        citation="Saillard et al., 2024 (H-optimus-0, Bioptimus)",
        description="ViT-g/14 with 4 registers, 1.1B parameters",
    )


@register_encoder("prov-gigapath")
def prov_gigapath() -> EncoderConfig:
    return EncoderConfig(
        name="prov-gigapath",
        dim=1536,
        arch="vit_giant_patch14_dinov2",
        arch_kwargs={"img_size": 224, "patch_size": 16, "init_values": 1e-5, "mlp_ratio": 5.33334},
        hf_hub_id="prov-gigapath/prov-gigapath",
        license="Prov-GigaPath licence (Apache-2.0, research use; gated)",
        citation="Xu et al., Nature 2024 (Prov-GigaPath)",
        description="ViT-g/16 tile encoder, 1.1B parameters",
    )


@register_encoder("stain-texture")
def stain_texture() -> EncoderConfig:
    return EncoderConfig(
        name="stain-texture",
        dim=len(stain_texture_spec.FEATURE_NAMES),
        kind="stain-texture",
        license="MIT (part of slidepredict)",
        citation="Ruifrok & Johnston, Anal Quant Cytol Histol 2001 (colour deconvolution)",
        description="hand-crafted, no weights: H&E stain statistics, multi-scale texture, nuclear density",
    )
