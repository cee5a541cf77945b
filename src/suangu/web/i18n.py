"""The dashboard's labels in English and Chinese (``?lang=zh``)."""

from __future__ import annotations

LANGS = ("en", "zh")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Suangu exchange dashboard",
        "member_title": "Member {member}",
        "as_of": "Market clock: {time} (slot {slot})",
        "orders": "Orders",
        "fill_rate": "Orders filled in full",
        "volume_fill": "Work asked for that was allocated",
        "gpu_hours": "GPU-hours traded",
        "avg_price": "Average price (yuan/GPU-h)",
        "spend": "Buyer spend (yuan, metered)",
        "revenue": "Provider revenue (yuan, after fee)",
        "fees": "Exchange fees (yuan)",
        "transfer": "Data transfer charges (yuan)",
        "green_share": "Green share of metered energy",
        "co2": "CO2 market-based (t)",
        "energy": "Metered energy (MWh)",
        "measured_share": "Energy measured by meters (NVML, Slurm)",
        "heat_title": "Cleared price by site and hour",
        "heat_note": "Average price of the GPU-hours traded at each site in each hour, yuan per "
        "GPU-hour (grey: nothing traded). Dates in China Standard Time (UTC+8).",
        "yuan_per_gpu_h": "yuan/GPU-h",
        "map_title": "Map of the sites",
        "map_note": "Each hub site at its coordinates: the circle's area is the GPU-hours "
        "traded there, its colour the average price (yuan per GPU-hour).",
        "volume_title": "Volume per site",
        "volume_note": "GPU-hours traded and their value at the cleared prices.",
        "index_title": "Daily price index by site and GPU class",
        "index_note": "Volume-weighted mean of each day's cleared prices, yuan per GPU-hour, "
        "over the last 30 days (days in China Standard Time; GET /api/v1/market/index, "
        "suangu market index).",
        "fill_title": "Fill rate by order kind",
        "fill_note": "Orders by outcome: all they asked for, part of it, or nothing (still "
        "open, expired or cancelled).",
        "balances_title": "Balances",
        "balances_note": "Posted balances of every account on the money ledger, yuan; held = "
        "the buyers' money held for cleared leases not yet settled.",
        "green_title": "Green energy and carbon per buyer",
        "green_note": "Green certificates retired to each buyer (kWh) and the market-based CO2 "
        "recorded for its leases (kg): energy not covered by certificates x the site "
        "province's grid factor.",
        "members": "Members",
        "account": "account",
        "kind": "kind",
        "owner": "owner",
        "balance": "balance",
        "held": "held",
        "member": "member",
        "role": "role",
        "certificates_kwh": "certificates (kWh)",
        "co2_kg": "CO2 (kg)",
        "cleared": "filled",
        "partially": "partly filled",
        "unfilled": "not filled",
        "batch": "batch",
        "gang": "gang",
        "service": "service",
        "no_trades": "No trades yet: run a clearing (suangu clear) or the demo (suangu demo).",
        "back": "Market overview",
        "api": "API documentation (OpenAPI)",
        "public_only": "This server shows public market data only.",
        "carbon_price": "Carbon price: {price} yuan per tonne of CO2, added by every clearing "
        "to the reserves of sites with an energy model (location-based grid carbon).",
        "ledger_ok": "Ledger balanced",
        "leases": "Leases by state",
        "yes": "yes",
        "no": "no",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "my_page": "My dashboard",
        "api_key": "API key",
        "sign_in_note": "Members sign in with their API key (sg_...) to see their own orders, "
        "leases and accounts. The session ends after 8 hours, on signing out, or when the key "
        "is revoked.",
        "bad_key": "Unknown or revoked API key.",
    },
    "zh": {
        "title": "算谷交易所看板",
        "member_title": "会员 {member}",
        "as_of": "市场时钟：{time}（时段 {slot}）",
        "orders": "订单",
        "fill_rate": "全部成交的订单",
        "volume_fill": "已分配的工作量占申报的比例",
        "gpu_hours": "成交 GPU 时",
        "avg_price": "平均价格（元/GPU 时）",
        "spend": "买方支出（元，按计量）",
        "revenue": "卖方收入（元，扣除手续费）",
        "fees": "交易所手续费（元）",
        "transfer": "数据传输费（元）",
        "green_share": "计量电量中的绿电比例",
        "co2": "二氧化碳，基于市场法（吨）",
        "energy": "计量电量（兆瓦时）",
        "measured_share": "实测电量占比（NVML、Slurm）",
        "heat_title": "各站点逐小时出清价格",
        "heat_note": "每个站点每小时成交 GPU 时的平均价格，元/GPU 时（灰色：无成交）。"
        "日期为北京时间（UTC+8）。",
        "yuan_per_gpu_h": "元/GPU 时",
        "map_title": "站点地图",
        "map_note": "各枢纽站点按经纬度标出：圆面积为该站点成交的 GPU 时，"
        "颜色为平均价格（元/GPU 时）。",
        "volume_title": "各站点成交量",
        "volume_note": "成交的 GPU 时及其按出清价格计算的金额。",
        "index_title": "各站点与 GPU 型号的每日价格指数",
        "index_note": "近 30 天每日出清价格按成交量加权的平均值，元/GPU 时（按北京时间计日；"
        "GET /api/v1/market/index，suangu market index）。",
        "fill_title": "按订单类型的成交率",
        "fill_note": "按结果统计的订单：全部成交、部分成交或未成交（仍挂单、已过期或已撤销）。",
        "balances_title": "余额",
        "balances_note": "资金账本上每个账户的已过账余额（元）；"
        "冻结 = 为已出清但尚未结算的租约冻结的买方资金。",
        "green_title": "各买方的绿电与碳排放",
        "green_note": "注销给各买方的绿证（千瓦时）及其租约记录的基于市场法的二氧化碳（千克）："
        "未被绿证覆盖的电量 x 站点所在省份的电网排放因子。",
        "members": "会员",
        "account": "账户",
        "kind": "类型",
        "owner": "所有者",
        "balance": "余额",
        "held": "冻结",
        "member": "会员",
        "role": "角色",
        "certificates_kwh": "绿证（千瓦时）",
        "co2_kg": "二氧化碳（千克）",
        "cleared": "全部成交",
        "partially": "部分成交",
        "unfilled": "未成交",
        "batch": "批处理",
        "gang": "整组",
        "service": "在线服务",
        "no_trades": "尚无成交：请运行一次出清（suangu clear）或演示（suangu demo）。",
        "back": "市场总览",
        "api": "API 文档（OpenAPI）",
        "public_only": "本服务器仅展示公开市场数据。",
        "carbon_price": "碳价：每吨二氧化碳 {price} 元，每次出清计入有能源模型站点的保留价"
        "（基于所在地电网排放因子）。",
        "ledger_ok": "账本平衡",
        "leases": "各状态租约数",
        "yes": "是",
        "no": "否",
        "sign_in": "登录",
        "sign_out": "退出",
        "my_page": "我的看板",
        "api_key": "API 密钥",
        "sign_in_note": "会员使用自己的 API 密钥（sg_...）登录，查看自己的订单、租约和账户。"
        "会话在 8 小时后、退出时或密钥被吊销时结束。",
        "bad_key": "API 密钥无效或已被吊销。",
    },
}


def pick(lang: str | None) -> str:
    """The language asked for, English when unknown."""
    return lang if lang in LANGS else "en"


def t(lang: str, key: str, **values: object) -> str:
    """The label ``key`` in ``lang`` with ``values`` filled in."""
    text = LABELS[pick(lang)][key]
    return text.format(**values) if values else text
