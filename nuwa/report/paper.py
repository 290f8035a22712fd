"""The paper's published numbers, transcribed from the text of arXiv 2207.09814 (NUWA-Infinity).

The only place a paper number is typed in. Row and column labels match nuwa.plan.TABLES.
Figures 16-17 are plots without printed numbers; their claims are the trends stated in §4.5.
"""
from __future__ import annotations

# Table 1: Implementation details of model training for different tasks (columns: UIG, T2I & IO, IA, T2V).
TABLE1_TASKS = ("UIG", "T2I & IO", "IA", "T2V")
TABLE1: dict[str, tuple[str, str, str, str]] = {
    "Backbone": ("VQGAN", "VQGAN", "PG-VQGAN", "PG-VQGAN"),
    "Codebook": ("16384", "16384", "16384", "16384"),
    "Dimension": ("256", "256", "256", "256"),
    "Compression Ratio": ("16", "16", "16", "16"),
    "Layer Number L": ("24", "24", "24", "24"),
    "Hidden Dimension d": ("1280", "1280", "1280", "1280"),
    "Head Number": ("20", "20", "20", "20"),
    "Self-attention": ("yes", "yes", "yes", "yes"),
    "Cross-attention": ("no", "yes", "no", "yes"),
    "Patch Number N": ("64", "16", "80", "80"),
    "Patch Tokens M": ("256", "256", "256", "256"),
    "Context Extent": ("(2, 2, 0)", "(2, 2, 0)", "(1, 1, 3)", "(2, 2, 3)"),
    "Name": ("RQF", "LHQC", "LHQ-V", "PeppaPig"),
    "Train Scale": ("128", "85K", "38K", "10K"),
    "Test Scale": ("N/A", "5K", "2K", "1K"),
    "Epoch": ("6000", "50", "50", "150"),
    "Visual Size W x H": ("2048x2048", "1024x1024", "1024x1024", "1024x1024"),
    "Frame Length F": ("N/A", "N/A", "5", "5"),
    "Text Length": ("N/A", "77", "N/A", "77"),
    "Batch Size": ("128", "512", "256", "256"),
    "Learning Rate": ("1e-4", "1e-4", "1e-4", "1e-4"),
    "Warmup Ratio": ("2%", "5%", "5%", "5%"),
}

# Tables 2-7: table -> row label -> column -> value (None: the paper's N/A)
TABLES: dict[str, dict[str, dict[str, float | None]]] = {
    "table2": {  # Text-to-Image HD on LHQC
        "Taming": {"Block-FID": 38.89, "Block-FID(x4)": 46.37, "IS": 4.58, "CLIP-SIM": 0.2662},
        "MaskGIT": {"Block-FID": 24.33, "Block-FID(x4)": 45.76, "IS": 4.61, "CLIP-SIM": 0.2754},
        "NUWA-Infinity": {"Block-FID": 9.71, "Block-FID(x4)": 15.65, "IS": 4.98, "CLIP-SIM": 0.2807},
    },
    "table3": {  # Image Animation HD on LHQ-V
        "NUWA-Infinity (NAR)": {"FVD": 368.16},
        "NUWA-Infinity (P-NAR)": {"FVD": 165.39},
        "NUWA-Infinity (AR)": {"FVD": 62.57},
    },
    "table4": {  # Image Outpainting HD on LHQC, Block-FID
        "Taming": {"Right Extend": 22.53, "Left Extend": None, "Down Extend": 26.38, "Up Extend": None},
        "MaskGIT": {"Right Extend": 14.68, "Left Extend": 14.81, "Down Extend": 25.57, "Up Extend": 25.38},
        "NUWA-Infinity w/o text": {"Right Extend": 6.43, "Left Extend": 6.71, "Down Extend": 11.47, "Up Extend": 8.03},
        "NUWA-Infinity": {"Right Extend": 6.45, "Left Extend": 6.72, "Down Extend": 9.84, "Up Extend": 7.43},
    },
    "table5": {  # Impact of feed position
        "Pre": {"Block-FID": 10.05, "Block-FID(x4)": 17.78},
        "Post": {"Block-FID": 10.47, "Block-FID(x4)": 18.89},
    },
    "table6": {  # Caches in NCP
        "w/o caches": {"Block-FID": 15.80, "Block-FID(x4)": 38.32},
        "w/ caches": {"Block-FID": 10.21, "Block-FID(x4)": 23.62},
    },
    "table7a": {  # Decoder model; inference speed relative to AR
        "NUWA-Infinity (NAR)": {"Block-FID": 92.34, "Block-FID(x4)": 98.67, "CLIP-SIM": 0.2451, "Inference Speed": 95.0},
        "NUWA-Infinity (P-NAR)": {"Block-FID": 19.86, "Block-FID(x4)": 38.59, "CLIP-SIM": 0.2726, "Inference Speed": 15.0},
        "NUWA-Infinity (AR)": {"Block-FID": 10.05, "Block-FID(x4)": 17.78, "CLIP-SIM": 0.2753, "Inference Speed": 1.0},
    },
    "table7b": {  # Decoder size
        "Base": {"Parameters": 202e6, "Depth": 16, "Dim": 768, "Block-FID": 10.05},
        "Large": {"Parameters": 809e6, "Depth": 24, "Dim": 1280, "Block-FID": 9.71},
    },
    "table7c": {  # Decoder loss
        "Patch": {"Block-FID": 10.05, "Convergence epoch": 50},
        "Accumulated": {"Block-FID": 11.62, "Convergence epoch": 70},
    },
}

# Where each claim of §4.4-4.5 is stated (claims.py refers to these by key).
SOURCES = {
    "table2": "§4.4.2, Table 2", "table3": "§4.4.3, Table 3", "table4": "§4.4.4, Table 4",
    "table5": "§4.5.1, Table 5", "table6": "§4.5.2, Table 6", "table7a": "§4.5.3, Table 7a",
    "table7b": "§4.5.3, Table 7b", "table7c": "§4.5.3, Table 7c", "figure16": "§4.5.1, Fig. 16",
    "figure17a": "§4.5.2, Fig. 17a", "figure17b": "§4.5.2, Fig. 17b", "linear": "§4.4.1 (Infinity ability)",
}
