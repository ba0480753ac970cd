"""The cue table: what a scammer *asks the elder to do*, and what a genuine caller says instead.

Patterns run on ``text.normalize``d turns (simplified script, so traditional input matches too), one clause
at a time. Each cue has a category; a call's risk sums the strongest cue per category (repeats add a
little), so a long friendly call does not drift upwards on small talk. Request cues are *negation-aware*:
"不要转账" / "唔好讲验证码" / "骗子会叫您转账" are warnings, not requests, and count for the genuine side.

Weights are log-odds contributions used by the hand-weighted fallback and, summed, as the ``prior`` feature
of the learned combiner (``train.py``, #20), which learns its own weight per category. They were set by hand from the fraud literature (公安部 反诈 cases, 96110
scripts) and checked against ``tests/data/fraud_hardcases_own.jsonl``; see ``detector.py`` for how they
combine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Speaker = Literal["caller", "callee", "any"]

# scam types reported to operators (Chinese, as the console shows them)
SAFE_ACCOUNT = "安全账户/转账"
POLICE = "冒充公检法"
FAMILY = "冒充亲友/猜猜我是谁"
SERVICE = "冒充客服/退款"
HEALTH = "保健品/免费体检"
INVEST = "高息理财/以房养老"
PLATFORM = "冒充平安通"
PRIZE = "中奖/预付费"
INSURANCE = "冒充医保/社保"
BANK = "冒充银行/验证码"
OTHER = "其他可疑来电"


@dataclass(frozen=True, kw_only=True)
class Cue:
    name: str
    category: str  # one contribution per category per call (strongest wins)
    weight: float  # log-odds; negative = evidence for a genuine call
    pattern: re.Pattern[str]
    speaker: Speaker = "caller"
    scam_type: str | None = None
    # a request cue inside a negated / warning clause becomes a warning (genuine evidence)
    negatable: bool = True
    # the match itself may hold the negation ("账户没有发现异常")
    inner_negation: bool = False
    label: str = ""


def _c(name: str, category: str, weight: float, pattern: str, **kw) -> Cue:
    return Cue(name=name, category=category, weight=weight, pattern=re.compile(pattern), **kw)


# negators just before a request ("不要转账", "唔好讲", "千万别", "不会问您要")
NEGATOR = re.compile(
    r"(不要|不用|不必|不需要|无需|毋须|别|不会|绝不|从不|从来不|决不|不能|不可以|不得|切勿|勿|千万别|千万不要|"
    r"唔好|唔使|唔会|唔需要|咪|冇|没有|没|不|唔|莫|并非|并不)"
)
# the clause describes what scammers do, or is advice ("凡是…都是骗子", "如果有人叫您…")
WARNING_FRAME = re.compile(
    r"(骗子|诈骗|骗案|骗局|冒充|假的|假冒|呃人|老千|扮|凡是|如果有人|若有人|有人会|有人叫|有人话|有人打电话|"
    r"如果佢|如果他|如果对方|若果有人|假如有人|要是有人|万一有人|"
    r"都系假|都是假|都是骗|都系骗|骗人|小心|提防|防骗|反诈|警惕|典型)"
)

# said *after* a described request in the same sentence: "…叫你转钱, 千祈唔好做" (no family object, so a
# scammer's "千万不要告诉家人" is not mistaken for a warning)
POST_WARNING = re.compile(
    r"(千祈唔好做|千万不要照做|千万别照做|千万别做|千万不要做|唔好照做|不要照做|别照做|唔好信|不要信|别信|千祈唔好信|"
    r"都是骗|都系骗|就是骗|就系骗|系骗子|是骗子|都是假|都系假|千祈唔好理|不要理)"
)

# a direct ask addressed to the elder ("请您…", "你要…", "麻烦你…") — a request even inside a warning frame
DIRECT_ASK = re.compile(r"(请您|请你|您需要|你需要|你要|您要|麻烦您|麻烦你|需要您|需要你|你必须|您必须|你得|您得|你先|您先|你就|帮我|你同我|你帮我)")

CUES: tuple[Cue, ...] = (
    # --- money leaving the elder ------------------------------------------------------------------
    _c("safe_account", "safe_account", 3.0,
       r"(安全账户|安全帐户|安全户口|保护账户|保护户口|监管账户|监管户口|资金监管|清查账户|核查账户|国家账户|"
       r"专用账户|指定账户|备用账户|验资|资金核查|资金清查|审查账户|安全卡)",
       scam_type=SAFE_ACCOUNT, label="要求转入'安全/监管账户'"),
    _c("transfer", "transfer", 1.8,
       r"(汇钱|汇过去|汇到|汇去|打钱|打款|打到.{0,6}(账|户|卡)|转到.{0,6}(账|户|卡)|转入|存到.{0,6}(账|户|卡)|"
       r"过数|转数|过钱|转钱|转去|转过去|扫码(付|转|交|支付|缴)|扫.{0,3}二维码|手机银行转|网银转|转一笔|转给|转.{0,3}(万|千|百)|先转)",
       scam_type=SAFE_ACCOUNT, label="要求转账/汇款"),
    _c("transfer_word", "transfer_word", 1.0,
       r"(转账|转帐|汇款|入数)", scam_type=SAFE_ACCOUNT, label="提到转账"),
    _c("pay", "pay", 0.7,
       r"(先交|先付|预付|先缴|交一笔|交钱|付钱|俾钱|畀钱|给钱|畀返|交返|付款|缴纳|交纳|垫付|支付)",
       label="要求付款"),
    _c("fee", "fee", 1.0,
       r"(手续费|保证金|押金|解冻费|激活费|税费|个人所得税|公证费|认证费|保释金|保释|服务费|会员费|定金|订金|"
       r"渠道费|通道费|刷流水|流水|解冻|保证费|风险金)",
       scam_type=PRIZE, label="预付各种费用"),
    _c("cash", "cash", 1.4,
       r"((取|攞|提|拿).{0,4}(现金|现钱|出来)|现金.{0,6}(交|给|俾|拿|送)|(派|叫|让).{0,6}(人|同事|律师|朋友).{0,6}(上门|来|嚟|过来).{0,4}(取|拿|攞|收)|"
       r"定期.{0,4}(取|攞|提|拿)|(取|攞|拿).{0,4}定期|提前支取)",
       scam_type=SAFE_ACCOUNT, label="要求取现金/上门取钱"),
    # --- secrets and credentials ------------------------------------------------------------------
    _c("code", "code", 2.4,
       r"(验证码|校验码|动态码|短信码|动态密码|确认码.{0,4}(念|读|报|讲|话|说|告诉|发)|(收到|收到嘅|收到的|(短信|短讯|信息|讯息)(里|入面|上)).{0,6}"
       r"(数字|号码|码|几个字)|(念|读|报|讲)(一下|下)?(给|俾|畀)我(听)?)",
       scam_type=BANK, label="索要短信验证码"),
    _c("card", "card", 2.2,
       r"(账户号码|账号|银行卡号|卡号|卡的号码|卡嘅号码|卡上.{0,4}(号码|数字)|卡背面.{0,4}(三|3)位|(取款|支付|银行卡|卡|网银|登录|查询)?密码|"
       r"cvv|安全码|有效期|存折号|账号)",
       scam_type=BANK, label="索要银行卡号/密码"),
    _c("id_number", "id_number", 1.0,
       r"(身份证号|身份证号码|身份证上.{0,4}(号|数字)|身份证嘅号码|证件号|社保卡号|医保卡号)",
       label="索要身份证号"),
    _c("remote", "remote", 1.8,
       r"(屏幕共享|共享屏幕|开启共享|打开共享|远程(控制|协助|操作)|下载.{0,6}(app|软件|程序|应用)|安装.{0,6}(app|软件|程序|应用)|"
       r"会议号|腾讯会议|视频会议|zoom|向日葵|teamviewer|todesk|点开.{0,4}链接|点.{0,3}链接|(睇|看)到你(个|的)?(手机|屏幕|画面))",
       scam_type=BANK, label="要求下载软件/屏幕共享"),
    # --- pressure ---------------------------------------------------------------------------------
    _c("secrecy_family", "secrecy", 2.2,
       r"(不要|别|不能|唔好|咪|千万别|千万不要|不可以|唔可以|唔准|不准|暂时别|暂时不要|先不要|先别|唔好住)"
       r"(告诉|跟|同|讲|话|和|对|俾|让|给|通知|说).{0,6}(家人|家里人|屋企人|子女|儿子|儿女|女儿|仔|个女|孩子|老伴|老公|老婆|"
       r"亲戚|银行|柜台|工作人员|职员|警察|派出所|邻居|知道)|(不要|别|唔好|不准|不能|唔准|千万别|千万不要)报警",
       scam_type=POLICE, label="要求对家人/银行保密"),
    _c("secrecy", "secrecy", 1.6,
       r"(保密协议|保密|秘密|不要声张|不能声张|不可以说出去|不要挂|别挂|唔好收线|唔好挂|不能挂|不准挂|单独|一个人去|"
       r"找个没人|冇人嘅地方|关机|不要接.{0,4}电话)", scam_type=POLICE, label="要求保密/不要挂断"),
    _c("coach_lie", "coach_lie", 2.0,
       r"((问|查).{0,8}(就说|就讲|就话|你就说|你就话|你就讲)|(就说|就话|就讲)(是|系)?.{0,4}(装修|买|亲戚|自己用|借俾|借给)|"
       r"要说是|唔好话.{0,4}(投资|转|汇))",
       negatable=False, scam_type=POLICE, label="教唆对银行撒谎"),
    _c("urgency", "urgency", 0.6,
       r"(马上|立即|立刻|尽快|赶紧|赶快|快一点|快一些|抓紧|今天之内|今日之内|今天内|小时内|分钟内|即刻|快啲|快点|否则|不然|逾期|过期作废|"
       r"来不及|名额有限|最后一天|只剩)",
       negatable=False, label="催促"),
    _c("threat", "threat", 1.0,
       r"(通缉|逮捕|拘捕|拘留|坐牢|坐监|判刑|涉嫌|洗钱|洗黑钱|涉案|犯罪|冻结|传票|起诉|法律责任|影响征信|征信|黑名单|"
       r"停用|停掉|注销|拉你|捉你|追究|立案)",
       negatable=False, scam_type=POLICE, label="威胁(冻结/逮捕/征信)"),
    # --- who they claim to be ---------------------------------------------------------------------
    _c("authority", "authority", 0.5,
       r"(公安|派出所|警察|警官|民警|刑警|差人|检察院|检察官|法院|法官|反诈中心|96110|经侦|国安|监管局|银保监|金融监管|"
       r"专案组|办案)",
       negatable=False, scam_type=POLICE, label="自称公检法"),
    _c("transfer_call", "transfer_call", 1.2,
       r"((帮你|帮您|给你|给您|同你|为您|为你)?(转接|转驳|接通|转过去).{0,6}(公安|警|派出所|法院|检察|专线|专员|经侦)|"
       r"按(1|一|9|九)(号|键)?.{0,4}(转|人工|查询))",
       negatable=False, scam_type=POLICE, label="电话转接到'公检法'"),
    _c("insurance", "insurance", 0.5,
       r"(医保卡|社保卡|医保.{0,4}(冻结|异常|停|违规|盗刷)|社保.{0,4}(冻结|异常|停)|养老金.{0,4}(停|冻结|认证|暂停))",
       negatable=False, scam_type=INSURANCE, label="医保/社保异常"),
    _c("callback_number", "callback_number", 1.0,
       r"((拨打|打|致电|联系|打去|打过去|打呢个|打这个).{0,6}(这个|呢个|以下|专线|热线|号码|电话)"
       r".{0,8}\d{3,}|专线.{0,4}\d{3,}|记(一下|低|下).{0,4}(号码|电话))",
       negatable=False, label="让老人拨打对方提供的号码"),
    _c("family_guess", "family", 1.4,
       r"(猜猜我是谁|猜下我是谁|你猜我是谁|估下我系边个|估吓我系边个|估下我系边|听不出来我|听唔出我|听唔出系我|"
       r"知道我是谁吗|记得我是谁|换了?(新)?(手机)?号码|换咗号码|新号码|嗓子|喉咙|感冒了声音|声沙)",
       negatable=False, scam_type=FAMILY, label="'猜猜我是谁'/换号码"),
    _c("family_trouble", "family_trouble", 1.2,
       r"(出事了|出咗事|出了点事|出了事|遇到了?(一点|点)?麻烦|被.{0,6}控制|撞了人|撞咗人|撞伤|被抓|被拘|俾人捉|保释|打架|医药费|急用钱|急需.{0,4}钱|借.{0,3}钱|周转|被扣押|被绑)",
       negatable=False, scam_type=FAMILY, label="亲友出事要钱"),
    _c("prize", "prize", 1.6,
       r"(中奖|中了.{0,4}(奖|大奖)|奖品|奖金|大奖|幸运用户|抽中|领奖|获奖|幸运观众|中咗奖|特等奖|一等奖|恭喜您?(被|成为|获得))",
       negatable=False, scam_type=PRIZE, label="中奖"),
    _c("refund", "refund", 0.8,
       r"(退款|退费|理赔|双倍赔偿|赔偿|退钱|退回.{0,3}钱|返还|赔付|补偿金|补贴.{0,4}(领取|发放))",
       negatable=False, scam_type=SERVICE, label="退款/理赔"),
    _c("invest_guarantee", "invest", 1.6,
       r"(年化|收益率|高收益|百分之(十|[一二三四五六七八九]十)|保本|稳赚|包赚|零风险|无风险|保证收益|保证回报|高息|高回报|月息|每月.{0,6}(利息|分红|回报|收益)|回报率|翻倍|"
       r"内部名额|原始股|以房养老|养老项目|养老公寓|分红|\d+(%|个点)|(两|2|三|3)分(利|息)|利息.{0,4}(高|多)|政府批)",
       negatable=False, scam_type=INVEST, label="高息/保本理财"),
    _c("invest_pitch", "invest_pitch", 0.8,
       r"(投资(项目|方案|机会|计划|产品|公司)|理财(产品|项目)|金融顾问|投资顾问|高收益|潜力|内部消息|炒股|股票推荐|数字货币|虚拟币)",
       scam_type=INVEST, label="推销投资理财"),
    _c("miracle", "miracle", 1.6,
       r"(神药|特效药|根治|包治|治好|断根|不用吃药|唔使食药|停药|停了.{0,4}药|停咗.{0,4}药|药.{0,4}(停|唔好食|不要吃)|"
       r"祖传|秘方|降三高|专家会诊|量子|磁疗|包好)",
       negatable=False, scam_type=HEALTH, label="神药/停药"),
    _c("account_alarm", "account_alarm", 1.0,
       r"((账户|帐户|户口|银行卡|卡|账号|医保|社保).{0,6}(异常|被盗|盗刷|风险|违规|被冻结|有问题)|异常(交易|登录|活动|消费|扣款)|"
       r"不明.{0,2}(转账|交易|扣款)|资金安全)",
       scam_type=BANK, label="声称账户异常", inner_negation=True),
    _c("parcel", "parcel", 1.6,
       r"((包裹|快递|邮件|件).{0,10}(海关|扣留|扣押|违禁|毒品|护照|清关|丢失|破损|查扣)|海关.{0,6}(扣|查))",
       scam_type=SERVICE, label="包裹被扣/违禁品", inner_negation=True),
    _c("kidnap", "kidnap", 3.0,
       r"(在我们手上|喺我哋手|绑架|赎金|撕票|见不到他|见唔返|扣押|按照我说的做|照我讲嘅做)",
       negatable=False, scam_type=FAMILY, label="绑架/勒索"),
    _c("verify_pretext", "verify_pretext", 0.6,
       r"((核实|验证|确认)(您的?|你的?|一下)?(身份|信息|资料)|身份验证|配合(我们)?.{0,4}(调查|核实|验证|处理)|"
       r"后(四|4|六|6)位|预留.{0,4}(手机|号码)|开户行)",
       scam_type=BANK, label="以核实身份为名索要资料"),
    _c("platform_claim", "platform_claim", 0.0,
       r"(平安通)", negatable=False, scam_type=PLATFORM, label="自称平安通"),
    # --- what the elder says (weak: the elder may only be repeating) -------------------------------
    _c("callee_complied", "callee_complied", 0.6,
       r"(我(已经)?(转|汇|打)(了|咗)|(验证码|密码|卡号)(是|系)|我去(银行|取钱|攞钱)|我.{0,3}下载(了|咗))",
       speaker="callee", negatable=False, label="老人已在照做"),
    # --- who asks whom: verification blocked vs invited (#20) --------------------------------------------
    _c("block_verify", "block_verify", 1.2,
       r"((不用|唔使|不要|别|唔好|不必|千万别|千万不要)(问|打俾|打给|打去|打电话给|去).{0,6}(儿子|女儿|仔|个女|子女|家人|屋企人|银行|分行|"
       r"柜台|110|警察|医生|其他人|任何人)|会打断|(医生|银行|警察|佢哋|他们).{0,8}(当然不会说|唔会话你知|不会告诉你)|那是针对骗子|我们不一样|唔同嘅|"
       r"(你|您)自己(话事|做主|决定就可以)|会阻拦|会拦着)",
       negatable=False, scam_type=POLICE, label="阻止老人向家人/银行/警方核实"),
    _c("reads_code_to_elder", "genuine_shows_code", -1.0,
       r"((屏幕|屏|智能屏|电视).{0,8}(显示|出咗|出了|出现|会出|有).{0,6}(码|数字|名字|照片|工号)|"
       r"(我|我哋|我们)(念|读|报)(俾|给|畀)(你|您)(听)?|唔使你读|不用您念|不用你念)",
       negatable=False, label="平台把码显示在屏幕上/读给老人核对(不是向老人要码)"),
    _c("invite_verify", "genuine_invite_verify", -0.8,
       r"((可以|可|你|您|自己).{0,6}(打|拨打|拨|致电|打去|打返|打电话问|打俾).{0,8}(110|96110|955\d\d|卡背面|服务卡|官方|屋企|你阿爸|你儿子|你女儿|热线|客服电话)|"
       r"视像|视频(通话|确认|核实)|核实一下我|查证)",
       negatable=False, label="邀请老人自行向官方/家人核实"),
    _c("money_to_elder", "genuine_money_in", -0.5,
       r"((我|已经)(已经)?(给|帮|同)?(你|您)(个户口|卡上|张卡|户口)?(转|存|打|入)(了|咗)|订金我已经俾咗|已经结过|(我|我哋|我们)(已经)?(俾|付|交)咗)",
       negatable=False, label="钱是流向老人的/已付清"),
    # --- genuine-call evidence (caller) ---------------------------------------------------------------
    _c("own_number_callback", "genuine_callback", -1.2,
       r"((挂|收线|收咗线|挂咗|挂了|挂断).{0,14}(打|拨|按|致电).{0,12}(卡背面|服务卡|官方|110|96110|一键|自己|您手上|你手上|"
       r"存折|通讯录|标签|12345|114|营业厅|热线))",
       negatable=False, label="请老人挂断后拨打自己手上的官方号码"),
    _c("no_request_promise", "genuine_promise", -0.8,
       r"((不会|唔会|不问|唔问|从来不会|不需要您|唔使你|不用您).{0,10}(验证码|密码|卡号|转账|转钱|俾钱|给钱|交钱|付钱|任何资料|"
       r"个人信息|身份证|钱|资料|操作手机))",
       negatable=False, label="承诺不索要资料/钱"),
    _c("in_person", "genuine_in_person", -0.6,
       r"(当面|柜台|网点|窗口|收费处|住院处|服务台|营业厅|到.{0,4}(医院|卫生站|卫生服务中心|社区|分行|支行|派出所)|上门.{0,6}(看|检查|服务)|陪.{0,4}(一齐|一起))",
       negatable=False, label="当面办理"),
    _c("free", "genuine_free", -0.3,
       r"(免费|不收.{0,3}(钱|费)|不要钱|唔使钱|唔收钱|冇收费)",
       negatable=False, label="免费"),
)

REQUEST_CATEGORIES = frozenset(
    {"safe_account", "transfer", "transfer_word", "pay", "fee", "cash", "code", "card", "id_number", "remote", "callback_number"}
)
MONEY_CATEGORIES = frozenset({"safe_account", "transfer", "transfer_word", "pay", "fee", "cash"})
CREDENTIAL_CATEGORIES = frozenset({"code", "card", "remote"})
PRESSURE_CATEGORIES = frozenset(
    {"secrecy", "coach_lie", "block_verify", "account_alarm", "invest_pitch", "parcel", "kidnap", "urgency", "threat", "authority", "transfer_call", "insurance", "family", "family_trouble",
     "prize", "refund", "invest", "miracle"}
)
