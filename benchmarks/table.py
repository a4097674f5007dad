"""pytest-benchmark JSON → the markdown table of benchmarks/README.md (images/s and ratios)."""
import json
import platform
import sys


def main(path: str) -> None:
    data = json.load(open(path))
    info = data["machine_info"]
    print(f"Machine: {info.get('cpu', {}).get('brand_raw', platform.processor())}, "
          f"{info.get('cpu', {}).get('count', '?')} cores; {data['datetime'][:10]}; "
          f"torch {__import__('torch').__version__}\n")
    print("| benchmark | mean s | images/s | vs torch backend |")
    print("|---|---:|---:|---:|")
    rows = {b["name"]: b for b in data["benchmarks"]}
    for name, b in rows.items():
        extra, mean = b["extra_info"], b["stats"]["mean"]
        rate = extra.get("images", 0) / mean
        ratio = ""
        if "[" in name and "tensor" in name:
            base = rows.get(name.replace("tensor", "torch"))
            if base:
                ratio = f"{base['stats']['mean'] / mean:.1f}×"
        print(f"| {name} | {mean:.2f} | {rate:,.0f} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1])
