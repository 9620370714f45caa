"""Realistic starting data for the sandbox: server groups, products, zones, disk types, subnets."""

from __future__ import annotations

from typing import Any

PRODUCTS: list[dict[str, Any]] = [
    {
        "product_id": "workspace.appstream.general.xlarge.2",
        "flavor_id": "c7.xlarge.2",
        "type": "BASE",
        "architecture": "x86",
        "cpu": "4",
        "cpu_desc": "4 vCPUs",
        "memory": "8192",
        "is_gpu": False,
        "system_disk_type": "SAS",
        "system_disk_size": "80",
        "descriptions": "General computing, 4 vCPUs | 8 GiB",
        "charge_mode": "0",
        "status": "normal",
        "package_type": "general",
        "series_type": "c7",
        "sessions": 4,
        "cloud_service_type": "hws.service.type.vdi",
        "resource_type": "hws.resource.type.workspace.appstream",
        "monthly_price": 310.0,
        "hourly_price": 0.62,
    },
    {
        "product_id": "workspace.appstream.general.xlarge.4",
        "flavor_id": "c7.xlarge.4",
        "type": "BASE",
        "architecture": "x86",
        "cpu": "4",
        "cpu_desc": "4 vCPUs",
        "memory": "16384",
        "is_gpu": False,
        "system_disk_type": "SAS",
        "system_disk_size": "80",
        "descriptions": "General computing, 4 vCPUs | 16 GiB",
        "charge_mode": "0",
        "status": "normal",
        "package_type": "general",
        "series_type": "c7",
        "sessions": 8,
        "cloud_service_type": "hws.service.type.vdi",
        "resource_type": "hws.resource.type.workspace.appstream",
        "monthly_price": 480.0,
        "hourly_price": 0.96,
    },
    {
        "product_id": "workspace.appstream.graphics.2xlarge.8",
        "flavor_id": "g6.2xlarge.8",
        "type": "ADVANCED",
        "architecture": "x86",
        "cpu": "8",
        "cpu_desc": "8 vCPUs",
        "memory": "65536",
        "is_gpu": True,
        "gpu_desc": "1 x NVIDIA T4",
        "system_disk_type": "SSD",
        "system_disk_size": "100",
        "descriptions": "Graphics, 8 vCPUs | 64 GiB | 1 x T4",
        "charge_mode": "0",
        "status": "normal",
        "package_type": "general",
        "series_type": "g6",
        "sessions": 2,
        "cloud_service_type": "hws.service.type.vdi",
        "resource_type": "hws.resource.type.workspace.appstream",
        "monthly_price": 2650.0,
        "hourly_price": 5.3,
    },
]

SUBNETS: list[dict[str, Any]] = [
    {"id": "7d0d3c1e-5a3b-4f51-9a8e-1c2b3d4e5f60", "name": "subnet-office", "vpc_id": "4b2e6f0a-8c1d-4e3f-9a0b-1c2d3e4f5a6b",
     "cidr": "192.168.10.0/24"},
    {"id": "9e8f7a6b-5c4d-4e3f-8a1b-2c3d4e5f6a7b", "name": "subnet-design", "vpc_id": "4b2e6f0a-8c1d-4e3f-9a0b-1c2d3e4f5a6b",
     "cidr": "192.168.20.0/24"},
    {"id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "name": "subnet-lab", "vpc_id": "6c5d4e3f-2a1b-4c9d-8e7f-6a5b4c3d2e1f",
     "cidr": "10.20.0.0/16"},
]

AVAILABILITY_ZONES: list[dict[str, Any]] = [
    {"availability_zone": "cn-north-4a", "display_name": "AZ1", "i18n": {"en_us": "AZ1", "zh_cn": "可用区1"},
     "sold_out": {"products": []}, "product_ids": [], "visible": True, "default_availability_zone": True},
    {"availability_zone": "cn-north-4b", "display_name": "AZ2", "i18n": {"en_us": "AZ2", "zh_cn": "可用区2"},
     "sold_out": {"products": []}, "product_ids": [], "visible": True, "default_availability_zone": False},
    {"availability_zone": "cn-north-4c", "display_name": "AZ3", "i18n": {"en_us": "AZ3", "zh_cn": "可用区3"},
     "sold_out": {"products": ["workspace.appstream.graphics.2xlarge.8"]}, "product_ids": [], "visible": True,
     "default_availability_zone": False},
]

# SAS's spec code is the API Explorer example's; the others follow the same pattern.
VOLUME_TYPES: list[dict[str, Any]] = [
    {"resource_spec_code": code, "volume_type": t, "volume_product_type": "workspace",
     "resource_type": "hws.resource.type.workspace.volume", "cloud_service_type": "hws.service.type.vdi",
     "name": [{"en_us": label}, {"zh_cn": label}],
     "volume_type_extra_specs": {"availability_zone": "cn-north-4a,cn-north-4b,cn-north-4c",
                                 "sold_out_availability_zone": ""}}
    for t, code, label in (("SAS", "workspace.volume.high", "High I/O"),
                           ("SSD", "workspace.volume.ultrahigh", "Ultra-high I/O"),
                           ("GPSSD", "workspace.volume.gpssd", "General Purpose SSD"),
                           ("ESSD", "workspace.volume.essd", "Extreme SSD"))
]

# What the sandbox's billing charges for a system disk, per GB, by spec code: (a month, an hour).
VOLUME_PRICES: dict[str, tuple[float, float]] = {
    "workspace.volume.high": (0.35, 0.0005),
    "workspace.volume.ultrahigh": (1.0, 0.0014),
    "workspace.volume.gpssd": (0.5, 0.0007),
    "workspace.volume.essd": (2.0, 0.0028),
}


def _group(index: int, name: str, product: dict[str, Any], subnet: dict[str, Any], disk: tuple[str, int],
           ou: str | None, description: str, **extra: Any) -> dict[str, Any]:
    info = {k: v for k, v in product.items() if not k.endswith("_price")}
    return {
        "id": f"{index:08x}-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        "name": name,
        "description": description,
        "image_id": "b9c8d7e6-f5a4-4b3c-9d2e-1f0a9b8c7d6e",
        "image_name": "Windows Server 2019 Datacenter (office apps)",
        "os_type": "Windows",
        "product_id": product["product_id"],
        "product_info": info,
        "subnet_id": subnet["id"],
        "subnet_name": subnet["name"],
        "system_disk_type": disk[0],
        "system_disk_size": disk[1],
        "is_vdi": False,
        "app_type": "SESSION_DESKTOP_APP",
        "create_time": "2026-03-02T08:15:00.000Z",
        "update_time": "2026-09-14T10:01:00.000Z",
        "storage_mount_policy": "USER",
        "enterprise_project_id": "0",
        "server_group_status": True,
        "site_type": "CENTER",
        "app_server_flavor_count": 1,
        "app_server_count": 0,
        "app_group_count": 2,
        "ou_name": ou,
        "tags": [],
        **extra,
    }


def server_groups(extra: int = 0) -> list[dict[str, Any]]:
    groups = [
        _group(1, "office-apps", PRODUCTS[0], SUBNETS[0], ("SAS", 80), "OU=Apps,DC=corp,DC=example",
               "Office suite for the whole company"),
        # A paid Marketplace (KooGallery) image: its fee is billed apart from the server's.
        _group(2, "design-studio", PRODUCTS[2], SUBNETS[1], ("SSD", 100), "OU=Design,DC=corp,DC=example",
               "CAD and rendering with GPUs", image_product_id="OFFI886474471245762560",
               image_name="CAD Suite 2026 (Marketplace)"),
        _group(3, "engineering-lab", PRODUCTS[1], SUBNETS[2], ("GPSSD", 120), None,
               "Test bench for the engineering team"),
    ]
    groups += [
        _group(100 + i, f"load-group-{i:04d}", PRODUCTS[i % 2], SUBNETS[i % 3], ("SAS", 80), None,
               "Generated group")
        for i in range(extra)
    ]
    return groups
