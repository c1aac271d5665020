// Diagnostics page (/diagnostics): the checklist people walk by hand when
// "WebRTC connection failed", as buttons in order of priority. Each check
// shows a status (ok, warn, fail) and, when not ok, what to do:
//
//   1. signaling: pinhole's HTTP API answers (GET /docs, /healthz)
//   2. room: the room exists and who is in it
//   3. STUN (5 s) and 4. TURN (8 s): this browser gathers candidates with the
//      given server; a srflx / relay candidate appears or not
//   5. server report: GET /api/v1/diagnostics (config, ports, ICE servers)
//   6. connection test: this browser publishes a test pattern to pinhole
//      (WHIP) and reads pinhole's own diagnosis of that session
//   7. self-test: pinhole's internal client through its public address
//   then the ICE candidate log, the verdict (the first failed check and its
//   fix, and a session's server-side diagnosis when ?session=<id> is given)
//   and "copy report", which puts everything support needs on the clipboard.
//
// Server texts (what was seen, fixes) are data: shown as sent, in English.
import { h, tr, setTitle, fmtClock } from './dom.js';
import { addMessages } from './i18n.js';
import { request, getJSON, enc, ApiError, adminToken } from './api.js';
import { waitGathering, sessionIdFrom } from './rtc.js';

// The manual checklist's numbers: a STUN server that has not answered in
// 5 s is useless to ICE; a TURN allocation (two round trips and
// authentication) gets 8 s. The connection test allows ICE, DTLS and the
// first media 20 s, which also covers pinhole's 10 s "no packet" verdict.
const STUN_MS = 5000;
const TURN_MS = 8000;
const CONNECT_MS = 20000;
const MEDIA_MS = 3000; // after connecting, how long media must flow
// The signaling check's own timeout: pinhole answers /healthz in
// milliseconds; a TCP forward that drops the SYN leaves the browser
// retrying for a minute or more. A failure before this is a refusal
// (nothing listens, or the router rejects), reaching it a drop.
const SIGNALING_MS = 5000;
// The path picture's steps, in the order packets pass them (the ids of
// api.PathStep); the page translates their labels.
const PATH_ARGS = { ice: { p: 'ICE' }, dtls: { p: 'DTLS' }, 'rtp-in': { p: 'SRTP/RTP' }, 'rtp-out-audio': { p: 'SRTP/RTP' }, 'rtp-out-video': { p: 'SRTP/RTP' } };
const PATH_STEPS = ['client', 'client-network', 'signaling', 'public', 'lease', 'ice', 'dtls', 'publisher', 'rtp-in', 'rtp-out-audio', 'rtp-out-video'];
const TEST_ROOM_PREFIX = 'diagnostics-';

// Technical names are passed as arguments so they stay untranslated data in
// every language.
const N = { stun: 'STUN', turn: 'TURN', ice: 'ICE', srflx: 'srflx', relay: 'relay', sdp: 'SDP' };

addMessages({
  en: {
    'diag.title': 'Diagnostics',
    'diag.intro': 'The checks people run by hand when a connection fails, in order of priority. Run them one by one or all at once; each says what it saw and, when something is wrong, what to do.',
    'diag.runAll': 'Run all checks',
    'diag.run': 'Run',
    'diag.running': 'running',
    'diag.status.ok': 'ok',
    'diag.status.warn': 'warning',
    'diag.status.fail': 'failed',
    'diag.status.pending': 'pending',
    'diag.status.skipped': 'skipped',
    'diag.notRun': 'Not run yet.',
    'diag.error': 'The check could not run.',
    'diag.fix': 'What to do:',

    'diag.signaling.title': 'Signaling server reachable',
    'diag.signaling.lead': 'pinhole answers {p} at this address (the API documentation and the health check).',
    'diag.signaling.ok': 'pinhole answered in {ms} ms.',
    'diag.signaling.fail': 'pinhole did not answer: {detail}',
    'diag.signaling.fix': 'Check the address, that pinhole runs, and any proxy or firewall in between.',

    'diag.signaling.refused': 'The connection to pinhole was refused or failed at once ({ms} ms): {detail}',
    'diag.signaling.timeout': 'No answer from pinhole within {s} s: the connection was dropped on the way.',
    'diag.signaling.fixRefused': 'Nothing accepts connections at this address: check that pinhole runs and listens on the port ({flag}), and that the router\'s or {frp}\'s {tcp} forward points at this host and port.',
    'diag.signaling.fixTimeout': 'The {tcp} connection is dropped on the way: add (or fix) the router\'s {tcp} port forward or the {frp} tcp proxy for this port to pinhole\'s host, and open the port in the firewall or cloud security group.',

    'diag.path.title': 'Path',
    'diag.path.lead': 'Each hop a session needs, from the client to pinhole and back: green when reached (with the time after the offer), red where it broke, grey when not reached.',
    'diag.path.broken': 'broken here',
    'diag.path.verdictId': 'Verdict',
    'diag.path.atHop': 'at hop',
    'diag.path.evidence': 'Evidence',
    'diag.path.history': 'Verdict history',
    'diag.path.client': 'Client',
    'diag.path.client-network': 'Client\'s network',
    'diag.path.signaling': 'Signaling',
    'diag.path.public': 'Router or tunnel',
    'diag.path.lease': 'pinhole\'s leased port',
    'diag.path.ice': '{p}',
    'diag.path.dtls': '{p}',
    'diag.path.publisher': 'Publisher in the room',
    'diag.path.rtp-in': '{p} in',
    'diag.path.rtp-out-audio': '{p} out: audio',
    'diag.path.rtp-out-video': '{p} out: video',

    'diag.room.title': 'Join a room and see the others',
    'diag.room.lead': 'The room exists and lists its publishers and viewers.',
    'diag.room.name': 'Room',
    'diag.room.ok': 'Room {room}: {publishers} publishing, {viewers} watching.',
    'diag.room.empty': 'Room {room} exists but nobody is in it.',
    'diag.room.missing': 'Room {room} does not exist (it is created when someone publishes or watches, if the server allows it).',
    'diag.room.noName': 'Enter a room name.',

    'diag.stun.title': '{p} server test (5 s)',
    'diag.stun.lead': 'This browser gathers candidates with the {p} server; a {c} candidate means the server answered and shows this network\'s public address.',
    'diag.stun.url': '{p} server',
    'diag.stun.ok': '{c} candidate {addr} after {ms} ms.',
    'diag.stun.none': 'No {c} candidate within {s} s.',
    'diag.stun.fix': 'Check the server address and port, and that this network lets UDP out to it (corporate and some mobile networks block UDP: use {turn} over {tcp} or {tls}).',
    'diag.stun.noUrl': 'Enter a {p} server address (or configure one on the server with {flag}).',

    'diag.turn.title': '{p} server test (8 s)',
    'diag.turn.lead': 'This browser asks the {p} server for a relay with the username and password; a {c} candidate means it works.',
    'diag.turn.url': '{p} server',
    'diag.turn.user': 'Username',
    'diag.turn.pass': 'Password',
    'diag.turn.ok': '{c} candidate {addr} after {ms} ms.',
    'diag.turn.none': 'No {c} candidate within {s} s.',
    'diag.turn.fix': 'Check the username and password (error 401), the address and port (error 701: unreachable), and that the server runs.',
    'diag.turn.noUrl': 'Enter a {p} server address, username and password.',
    'diag.candError': 'Error {code} from {url}: {text}',

    'diag.server.title': 'Server report',
    'diag.server.lead': 'pinhole checks its own configuration: public address, port ranges, every port, and the configured {p} servers.',
    'diag.server.result': '{ok} checks ok, {warn} warnings, {fail} failed.',
    'diag.server.check': 'Check',
    'diag.server.status': 'Status',
    'diag.server.seen': 'Seen',
    'diag.server.fixCol': 'What to do',

    'diag.conn.title': 'Full connection test from this browser',
    'diag.conn.lead': 'This browser publishes a test pattern to pinhole, as a camera would, and reads pinhole\'s own diagnosis of that session.',
    'diag.conn.ok': 'Connected {ms} ms after the answer; media flowed ({kb} KB sent).',
    'diag.conn.fail': 'The connection failed: {summary}',
    'diag.conn.noMedia': 'Connected, but no media reached pinhole.',
    'diag.conn.path': 'Path: {pair}',

    'diag.self.title': 'Self-test through the public address',
    'diag.self.lead': 'pinhole connects an internal client to itself through its public address and a leased port and sends media. This proves the port mapping where it also accepts traffic from the server itself.',
    'diag.self.ok': 'Media flowed through {target} (connected in {ms} ms).',
    'diag.self.fail': 'No media through {target}.',
    'diag.self.token': 'Admin token (if the server requires one)',
    'diag.self.needsToken': 'This server requires the admin token for the self-test: enter it above.',
    'diag.server.needsToken': 'The server report is for the admin: enter the admin token above (pinhole logs where it keeps it at start).',

    'diag.log.title': '{p} candidate log',
    'diag.log.lead': 'Every candidate the tests on this page gathered, and every error.',
    'diag.log.empty': 'No candidates yet: run a {p} or connection test.',
    'diag.log.time': 'Time',
    'diag.log.test': 'Test',
    'diag.log.type': 'Type',
    'diag.log.proto': 'Protocol',
    'diag.log.addr': 'Address',

    'diag.verdict.title': 'Verdict',
    'diag.verdict.none': 'Run the checks to get a verdict.',
    'diag.verdict.ok': 'Every check that ran passed.',
    'diag.verdict.fail': 'First problem:',
    'diag.verdict.pending': 'Checks are running.',
    'diag.session.title': 'Session {id}',
    'diag.session.hops': 'Hops',
    'diag.session.timeline': 'Timeline',
    'diag.session.missing': 'Session {id} is not known (it may have expired).',

    'diag.copy': 'Copy report',
    'diag.copied': 'The report is on the clipboard: paste it into your support request.',
    'diag.copyManual': 'The browser did not allow the clipboard; select the text below and copy it.',
  },
  'zh-CN': {
    'diag.title': '诊断',
    'diag.intro': '连接失败时人们手动执行的检查，按优先级排列。可逐项运行，也可一次全部运行；每项显示所见情况，出现问题时给出解决办法。',
    'diag.runAll': '运行全部检查',
    'diag.run': '运行',
    'diag.running': '运行中',
    'diag.status.ok': '正常',
    'diag.status.warn': '警告',
    'diag.status.fail': '失败',
    'diag.status.pending': '进行中',
    'diag.status.skipped': '已跳过',
    'diag.notRun': '尚未运行。',
    'diag.error': '检查无法运行。',
    'diag.fix': '解决办法：',

    'diag.signaling.title': '信令服务器可达',
    'diag.signaling.lead': 'pinhole 在此地址响应 {p} 请求（接口文档和健康检查）。',
    'diag.signaling.ok': 'pinhole 在 {ms} 毫秒内响应。',
    'diag.signaling.fail': 'pinhole 没有响应：{detail}',
    'diag.signaling.fix': '请检查地址、pinhole 是否在运行，以及中间的代理或防火墙。',

    'diag.signaling.refused': '到 pinhole 的连接被拒绝或立即失败（{ms} 毫秒）：{detail}',
    'diag.signaling.timeout': '{s} 秒内 pinhole 没有响应：连接在途中被丢弃。',
    'diag.signaling.fixRefused': '此地址没有程序接受连接：请检查 pinhole 是否在运行并监听该端口（{flag}），以及路由器或 {frp} 的 {tcp} 转发是否指向本机和该端口。',
    'diag.signaling.fixTimeout': '{tcp} 连接在途中被丢弃：请为该端口添加（或修正）路由器的 {tcp} 端口转发或 {frp} 的 {tcp} 代理，指向 pinhole 所在主机，并在防火墙或云安全组中放行该端口。',

    'diag.path.title': '路径',
    'diag.path.lead': '会话从客户端到 pinhole 再返回所需的每一环：已到达为绿色（附收到请求后的时间），中断处为红色，未到达为灰色。',
    'diag.path.broken': '在此中断',
    'diag.path.verdictId': '结论',
    'diag.path.atHop': '环节',
    'diag.path.evidence': '证据',
    'diag.path.history': '结论变化',
    'diag.path.client': '客户端',
    'diag.path.client-network': '客户端网络',
    'diag.path.signaling': '信令',
    'diag.path.public': '路由器或隧道',
    'diag.path.lease': 'pinhole 租用的端口',
    'diag.path.ice': '{p}',
    'diag.path.dtls': '{p}',
    'diag.path.publisher': '房间中的发布者',
    'diag.path.rtp-in': '{p} 入',
    'diag.path.rtp-out-audio': '{p} 出：音频',
    'diag.path.rtp-out-video': '{p} 出：视频',

    'diag.room.title': '加入房间并看到其他人',
    'diag.room.lead': '房间存在，并列出其中的发布者和观看者。',
    'diag.room.name': '房间',
    'diag.room.ok': '房间 {room}：{publishers} 人发布，{viewers} 人观看。',
    'diag.room.empty': '房间 {room} 存在，但没有人。',
    'diag.room.missing': '房间 {room} 不存在（如果服务器允许，有人发布或观看时会自动创建）。',
    'diag.room.noName': '请输入房间名。',

    'diag.stun.title': '{p} 服务器测试（5 秒）',
    'diag.stun.lead': '本浏览器使用该 {p} 服务器收集候选地址；出现 {c} 候选表示服务器已响应，并显示本网络的公网地址。',
    'diag.stun.url': '{p} 服务器',
    'diag.stun.ok': '{ms} 毫秒后得到 {c} 候选 {addr}。',
    'diag.stun.none': '{s} 秒内没有 {c} 候选。',
    'diag.stun.fix': '请检查服务器地址和端口，以及本网络是否允许 UDP 出站到该服务器（公司网络和部分移动网络会屏蔽 UDP：请改用基于 {tcp} 或 {tls} 的 {turn}）。',
    'diag.stun.noUrl': '请输入 {p} 服务器地址（或在服务器上用 {flag} 配置）。',

    'diag.turn.title': '{p} 服务器测试（8 秒）',
    'diag.turn.lead': '本浏览器用用户名和密码向 {p} 服务器申请中继；出现 {c} 候选表示可用。',
    'diag.turn.url': '{p} 服务器',
    'diag.turn.user': '用户名',
    'diag.turn.pass': '密码',
    'diag.turn.ok': '{ms} 毫秒后得到 {c} 候选 {addr}。',
    'diag.turn.none': '{s} 秒内没有 {c} 候选。',
    'diag.turn.fix': '请检查用户名和密码（错误 401）、地址和端口（错误 701：不可达），以及服务器是否在运行。',
    'diag.turn.noUrl': '请输入 {p} 服务器地址、用户名和密码。',
    'diag.candError': '来自 {url} 的错误 {code}：{text}',

    'diag.server.title': '服务器报告',
    'diag.server.lead': 'pinhole 检查自身配置：公网地址、端口范围、每个端口，以及已配置的 {p} 服务器。',
    'diag.server.result': '{ok} 项正常，{warn} 项警告，{fail} 项失败。',
    'diag.server.check': '检查项',
    'diag.server.status': '状态',
    'diag.server.seen': '所见',
    'diag.server.fixCol': '解决办法',

    'diag.conn.title': '从本浏览器进行完整连接测试',
    'diag.conn.lead': '本浏览器像摄像头一样向 pinhole 发布测试画面，并读取 pinhole 对该会话的诊断。',
    'diag.conn.ok': '收到应答后 {ms} 毫秒连接成功；媒体已传输（已发送 {kb} 千字节）。',
    'diag.conn.fail': '连接失败：{summary}',
    'diag.conn.noMedia': '已连接，但没有媒体到达 pinhole。',
    'diag.conn.path': '路径：{pair}',

    'diag.self.title': '通过公网地址自检',
    'diag.self.lead': 'pinhole 让内部客户端经由公网地址和一个租用端口连接自身并发送媒体。在端口映射也接受来自服务器自身流量的情况下，这能证明映射有效。',
    'diag.self.ok': '媒体已经由 {target} 传输（{ms} 毫秒内连接）。',
    'diag.self.fail': '没有媒体经由 {target} 传输。',
    'diag.self.token': '管理令牌（如果服务器要求）',
    'diag.self.needsToken': '此服务器的自检需要管理令牌：请在上方输入。',
    'diag.server.needsToken': '服务器报告仅供管理员查看：请在上方输入管理令牌（pinhole 启动时会记录其保存位置）。',

    'diag.log.title': '{p} 候选地址日志',
    'diag.log.lead': '本页测试收集到的所有候选地址和所有错误。',
    'diag.log.empty': '还没有候选地址：请运行 {p} 测试或连接测试。',
    'diag.log.time': '时间',
    'diag.log.test': '测试',
    'diag.log.type': '类型',
    'diag.log.proto': '协议',
    'diag.log.addr': '地址',

    'diag.verdict.title': '结论',
    'diag.verdict.none': '运行检查后给出结论。',
    'diag.verdict.ok': '已运行的检查全部通过。',
    'diag.verdict.fail': '第一个问题：',
    'diag.verdict.pending': '检查正在运行。',
    'diag.session.title': '会话 {id}',
    'diag.session.hops': '环节',
    'diag.session.timeline': '时间线',
    'diag.session.missing': '未知会话 {id}（可能已过期）。',

    'diag.copy': '复制报告',
    'diag.copied': '报告已复制到剪贴板：请粘贴到您的支持请求中。',
    'diag.copyManual': '浏览器不允许使用剪贴板；请选中下面的文字并复制。',
  },
});

// Titles of the checks for the verdict line, by id.
const TITLES = {
  signaling: ['diag.signaling.title'],
  room: ['diag.room.title'],
  stun: ['diag.stun.title', { p: N.stun }],
  turn: ['diag.turn.title', { p: N.turn }],
  server: ['diag.server.title'],
  conn: ['diag.conn.title'],
  self: ['diag.self.title'],
};

/** mount renders the diagnostics page into root. */
export function mount(root, ctx) {
  setTitle('diag.title');
  if (!document.querySelector('link[href="/static/diagnostics.css"]')) {
    document.head.append(h('link', { rel: 'stylesheet', href: '/static/diagnostics.css' }));
  }
  const page = new DiagPage(ctx);
  root.append(page.render());
  page.start();
}

/** Result of one check: a status, a translated line with data arguments, details (data), a fix. */
function result(status, key, args, extra = {}) {
  return { status, key, args, details: extra.details || [], fix: extra.fix || '', fixKey: extra.fixKey || '', fixArgs: extra.fixArgs, data: extra.data, verdict: extra.verdict };
}

// clientPath is the path picture of a check this page ran itself: the
// browser reached, the step that failed red, the rest not reached.
function clientPath(brokenId, verdictId) {
  const steps = [];
  let past = false;
  for (const id of ['client', 'client-network', 'signaling', 'public', 'lease', 'ice', 'dtls']) {
    const broken = id === brokenId;
    steps.push({ id, status: broken ? 'fail' : past ? 'skipped' : 'ok', broken, label: '', detail: '' });
    past = past || broken;
  }
  return renderPath(steps, { id: verdictId, hop: brokenId });
}

// renderPath draws the hops as a line of boxes: green with the time each
// was reached, red where it broke (pointed at, its fix beside it), grey
// when not reached. steps are api.PathStep (server) or clientPath's.
function renderPath(steps, verdict) {
  const known = new Set(PATH_STEPS);
  const list = h('ol', { class: 'diag-path', dataset: { verdict: verdict ? verdict.id || '' : '' } },
    steps.map((st) => {
      const at = st.since_start_ms != null ? h('span', { class: 'diag-path-time', v: `+${Math.round(st.since_start_ms)} ms` }) : null;
      return h('li', { class: st.broken ? 'diag-step broken' : 'diag-step', dataset: { step: st.id, status: st.status, hop: st.hop || '' },
        'aria-current': st.broken ? 'step' : null },
        h('span', { class: 'diag-step-name', i18n: known.has(st.id) ? `diag.path.${st.id}` : null, args: PATH_ARGS[st.id], v: known.has(st.id) ? null : st.id }),
        st.label ? h('span', { class: 'diag-step-label', v: st.label }) : null,
        badge(st.status), at,
        st.broken ? h('span', { class: 'diag-step-pointer', i18n: 'diag.path.broken' }) : null);
    }));
  const brokenStep = steps.find((st) => st.broken);
  const fix = brokenStep && brokenStep.fix
    ? h('p', { class: 'diag-path-fix' }, tr('diag.fix', null, 'span', { class: 'diag-fix' }), ' ', h('span', { v: brokenStep.fix }))
    : null;
  return h('div', { class: 'diag-path-wrap' }, h('p', {}, tr('diag.path.title', null, 'strong')), list, fix);
}

class DiagPage {
  constructor(ctx) {
    this.ctx = ctx;
    this.sessionId = ctx.query.get('session') || '';
    this.results = {}; // check id -> result
    this.cards = {}; // check id -> {out, button}
    this.candidates = []; // candidate log entries
    this.serverReport = null;
    this.sessions = {}; // session id -> diagnosis
    this.iceServers = []; // from the WHIP Link headers of the connection test
  }

  render() {
    const inputs = (id, ...fields) => h('div', { class: 'diag-inputs' }, ...fields);
    const field = (id, labelKey, labelArgs, props = {}) => {
      const input = h('input', { id, lang: 'en', autocomplete: 'off', spellcheck: 'false', ...props });
      return { input, el: h('div', { class: 'field' }, h('label', { for: id, i18n: labelKey, args: labelArgs }), input) };
    };
    this.roomIn = field('diag-room', 'diag.room.name', null, { value: this.ctx.query.get('room') || '', maxlength: 64 });
    this.stunIn = field('diag-stun-url', 'diag.stun.url', { p: N.stun }, { placeholder: 'stun:stun.example.org:3478' });
    this.turnIn = field('diag-turn-url', 'diag.turn.url', { p: N.turn }, { placeholder: 'turn:turn.example.org:3478?transport=udp' });
    this.turnUser = field('diag-turn-user', 'diag.turn.user', null);
    this.turnPass = field('diag-turn-pass', 'diag.turn.pass', null, { type: 'password' });
    this.adminIn = field('diag-admin-token', 'diag.self.token', null, { type: 'password', value: adminToken() });
    // Kept for the tab: the server report and every other admin call of
    // the app send it.
    this.adminIn.input.addEventListener('input', () => adminToken(this.adminIn.input.value.trim()));

    const card = (id, leadArgs, ...body) => {
      const [titleKey, titleArgs] = TITLES[id];
      const out = h('div', { class: 'diag-result', 'aria-live': 'polite' });
      const button = h('button', { type: 'button', class: 'small', i18n: 'diag.run', dataset: { check: id }, onclick: () => this.run(id) });
      this.cards[id] = { out, button };
      const li = h('li', { class: 'card diag-check', dataset: { check: id } },
        h('div', { class: 'card-head' }, h('h2', { i18n: titleKey, args: titleArgs }), button),
        tr(`diag.${id}.lead`, leadArgs, 'p', { class: 'muted' }),
        ...body, out);
      return li;
    };

    this.logBody = h('tbody');
    this.logEmpty = tr('diag.log.empty', { p: `${N.stun}/${N.turn}` }, 'p', { class: 'empty' });
    this.verdictOut = h('div', { class: 'diag-result', id: 'diag-verdict', 'aria-live': 'polite' });
    this.sessionOut = h('div', { id: 'diag-session' });
    this.copyOut = h('div', { class: 'status-area' });
    this.reportText = h('textarea', { class: 'diag-report', id: 'diag-report', readonly: true, hidden: true, lang: 'en', 'aria-label': 'report' });

    return h('div', {},
      h('div', { class: 'page-head' }, tr('diag.title', null, 'h1'), tr('diag.intro', null, 'p', { class: 'lead' }),
        h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'primary', id: 'diag-run-all', i18n: 'diag.runAll', onclick: () => this.runAll() }),
          h('button', { type: 'button', id: 'diag-copy', i18n: 'diag.copy', onclick: () => this.copy() }))),
      h('ol', { class: 'diag-checks' },
        card('signaling', { p: 'HTTP' }),
        card('room', null, inputs('room', this.roomIn.el)),
        card('stun', { p: N.stun, c: N.srflx }, inputs('stun', this.stunIn.el)),
        card('turn', { p: N.turn, c: N.relay }, inputs('turn', this.turnIn.el, this.turnUser.el, this.turnPass.el)),
        card('server', { p: N.stun + '/' + N.turn }),
        card('conn'),
        card('self', null, inputs('self', this.adminIn.el))),
      h('section', { class: 'card', id: 'diag-log' },
        h('h2', { i18n: 'diag.log.title', args: { p: N.ice } }),
        tr('diag.log.lead', null, 'p', { class: 'muted' }),
        this.logEmpty,
        h('div', { class: 'table-wrap' }, h('table', { class: 'diag-table' },
          h('thead', {}, h('tr', {},
            h('th', { i18n: 'diag.log.time' }), h('th', { i18n: 'diag.log.test' }), h('th', { i18n: 'diag.log.type' }),
            h('th', { i18n: 'diag.log.proto' }), h('th', { i18n: 'diag.log.addr' }))),
          this.logBody))),
      h('section', { class: 'card', id: 'diag-verdict-card' },
        h('div', { class: 'card-head' }, h('h2', { i18n: 'diag.verdict.title' }),
          h('button', { type: 'button', class: 'small', i18n: 'diag.copy', onclick: () => this.copy() })),
        this.verdictOut, this.copyOut, this.reportText, this.sessionOut));
  }

  async start() {
    for (const id of Object.keys(this.cards)) this.show(id, null);
    this.renderVerdict();
    // Prefill the STUN/TURN fields with the servers pinhole hands to its
    // clients (they are in the report, which lists them without probing).
    // The report is the admin's: without the token there is nothing to
    // prefill from, and asking would only be refused.
    if (adminToken()) try {
      const rep = await getJSON('/api/v1/diagnostics?probes=false');
      for (const c of rep.checks || []) {
        const m = /^ICE server ((stuns?|turns?):\S+)$/.exec(c.name || '');
        if (!m) continue;
        if (m[2].startsWith('stun') && !this.stunIn.input.value) this.stunIn.input.value = m[1];
        if (m[2].startsWith('turn') && !this.turnIn.input.value) this.turnIn.input.value = m[1];
      }
    } catch {
      // The signaling check will say why the server does not answer.
    }
    if (this.sessionId) await this.loadSession(this.sessionId);
  }

  async runAll() {
    for (const id of Object.keys(this.cards)) await this.run(id);
  }

  async run(id) {
    const c = this.cards[id];
    if (c.button.disabled) return;
    c.button.disabled = true;
    this.results[id] = { status: 'running' };
    this.show(id, { status: 'running', key: 'diag.running' });
    this.renderVerdict();
    let r;
    try {
      r = await this[`check_${id}`]();
    } catch (err) {
      const detail = err instanceof ApiError ? [err.problem.title, err.problem.detail].filter(Boolean).join(': ') || `HTTP ${err.status}` : String(err && err.message ? err.message : err);
      r = result('fail', 'diag.error', null, { details: [detail] });
    }
    this.results[id] = r;
    this.show(id, r);
    c.button.disabled = false;
    this.renderVerdict();
  }

  // show renders a result into its card.
  show(id, r) {
    const out = this.cards[id].out;
    if (!r) {
      out.replaceChildren(tr('diag.notRun', null, 'p', { class: 'muted' }));
      out.dataset.status = 'none';
      return;
    }
    out.dataset.status = r.status;
    out.dataset.verdict = r.verdict ? r.verdict.id : '';
    const parts = [h('p', {}, badge(r.status), tr(r.key, r.args))];
    if (r.details && r.details.length) parts.push(h('ul', {}, r.details.map((d) => (d instanceof Node ? h('li', {}, d) : h('li', { v: d })))));
    if (r.fixKey) parts.push(h('p', {}, tr('diag.fix', null, 'span', { class: 'diag-fix' }), ' ', tr(r.fixKey, r.fixArgs)));
    if (r.fix) parts.push(h('p', {}, tr('diag.fix', null, 'span', { class: 'diag-fix' }), ' ', h('span', { v: r.fix })));
    if (r.data) parts.push(r.data);
    out.replaceChildren(...parts);
  }

  // ------------------------------------------------------------ checks

  // check_signaling fetches /healthz with a timeout of its own, so that a
  // dropped TCP forward (timeout) is told from a refused one (fails fast).
  async check_signaling() {
    const t0 = performance.now();
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), SIGNALING_MS);
    let res;
    try {
      res = await fetch('/healthz', { cache: 'no-store', signal: ctl.signal });
    } catch (err) {
      const ms = Math.round(performance.now() - t0);
      const path = (id) => clientPath('signaling', id);
      if (ctl.signal.aborted) {
        return result('fail', 'diag.signaling.timeout', { s: SIGNALING_MS / 1000 }, {
          fixKey: 'diag.signaling.fixTimeout', fixArgs: { tcp: 'TCP', frp: 'FRP' }, data: path('signaling-timeout'),
          verdict: { id: 'signaling-timeout', hop: 'signaling' } });
      }
      return result('fail', 'diag.signaling.refused', { ms, detail: String(err && err.message ? err.message : err) }, {
        fixKey: 'diag.signaling.fixRefused', fixArgs: { flag: '--http-addr', tcp: 'TCP', frp: 'FRP' }, data: path('signaling-refused'),
        verdict: { id: 'signaling-refused', hop: 'signaling' } });
    } finally {
      clearTimeout(timer);
    }
    if (!res.ok) {
      return result('fail', 'diag.signaling.fail', { detail: `HTTP ${res.status}` }, { fixKey: 'diag.signaling.fix' });
    }
    return result('ok', 'diag.signaling.ok', { ms: Math.round(performance.now() - t0) });
  }

  async check_room() {
    const room = this.roomIn.input.value.trim();
    if (!room) return result('warn', 'diag.room.noName');
    let list;
    try {
      list = await getJSON(`/api/v1/rooms/${enc(room)}/participants`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return result('warn', 'diag.room.missing', { room });
      throw err;
    }
    const ps = list.participants || [];
    const pubs = ps.filter((p) => p.role === 'publisher').length;
    // Each participant links to its own diagnosis.
    // Session ids (and so diagnoses) are listed to the admin only.
    const details = ps.map((p) => (p.session_id
      ? h('a', { href: `/diagnostics?session=${enc(p.session_id)}`, v: `${p.role} ${p.user_id || p.session_id.slice(0, 8)} (${p.state})` })
      : h('span', { v: `${p.role} ${p.user_id || p.id} (${p.state})` })));
    if (!ps.length) return result('ok', 'diag.room.empty', { room });
    return result('ok', 'diag.room.ok', { room, publishers: pubs, viewers: ps.length - pubs }, { details });
  }

  async check_stun() {
    const url = this.stunIn.input.value.trim();
    if (!url) return result('warn', 'diag.stun.noUrl', { p: N.stun, flag: '--ice-servers' });
    const g = await this.gather('stun', [{ urls: url }], 'all', STUN_MS, 'srflx');
    if (g.found) return result('ok', 'diag.stun.ok', { c: N.srflx, addr: g.found.addr, ms: g.found.ms }, { details: g.errors });
    return result('fail', 'diag.stun.none', { c: N.srflx, s: STUN_MS / 1000 }, { details: g.errors, fixKey: 'diag.stun.fix', fixArgs: { turn: N.turn, tcp: 'TCP', tls: 'TLS' } });
  }

  async check_turn() {
    const url = this.turnIn.input.value.trim();
    if (!url) return result('warn', 'diag.turn.noUrl', { p: N.turn });
    const servers = [{ urls: url, username: this.turnUser.input.value, credential: this.turnPass.input.value }];
    const g = await this.gather('turn', servers, 'relay', TURN_MS, 'relay');
    if (g.found) return result('ok', 'diag.turn.ok', { c: N.relay, addr: g.found.addr, ms: g.found.ms }, { details: g.errors });
    return result('fail', 'diag.turn.none', { c: N.relay, s: TURN_MS / 1000 }, { details: g.errors, fixKey: 'diag.turn.fix' });
  }

  // gather collects candidates with the given ICE servers for up to ms,
  // logging each; it stops early once a candidate of type want appears.
  async gather(source, iceServers, policy, ms, want) {
    let pc;
    try {
      pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: policy });
    } catch (err) {
      // A malformed URL throws here (SyntaxError): that is the result.
      return { found: null, errors: [String(err.message || err)] };
    }
    const t0 = performance.now();
    const errors = [];
    let found = null;
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      const finish = () => {
        clearTimeout(timer);
        resolve();
      };
      pc.addEventListener('icecandidate', (ev) => {
        if (!ev.candidate || !ev.candidate.candidate) {
          finish();
          return;
        }
        const c = parseCandidate(ev.candidate);
        this.logCandidate(source, c);
        if (c.type === want && !found) {
          found = { addr: `${c.address}:${c.port}`, ms: Math.round(performance.now() - t0) };
          finish();
        }
      });
      pc.addEventListener('icecandidateerror', (ev) => {
        const e = { code: ev.errorCode, text: ev.errorText || '', url: ev.url || '' };
        errors.push(`${e.code} ${e.text} (${e.url})`);
        this.logCandidate(source, { error: e });
      });
      pc.createDataChannel('diagnostics');
      pc.createOffer().then((o) => pc.setLocalDescription(o)).catch((err) => {
        errors.push(String(err.message || err));
        finish();
      });
    });
    pc.close();
    return { found, errors };
  }

  async check_server() {
    if (!adminToken()) return result('warn', 'diag.server.needsToken');
    const rep = await getJSON('/api/v1/diagnostics');
    this.serverReport = rep;
    const n = { ok: 0, warn: 0, fail: 0 };
    for (const c of rep.checks || []) n[c.status] = (n[c.status] || 0) + 1;
    const rows = (rep.checks || []).map((c) => h('tr', { dataset: { check: c.id, status: c.status } },
      h('td', { v: c.name }), h('td', {}, badge(c.status)), h('td', { v: c.seen || '' }), h('td', { v: c.fix || '' })));
    const table = h('div', { class: 'table-wrap' }, h('table', { class: 'diag-table', id: 'diag-server-table' },
      h('thead', {}, h('tr', {}, h('th', { i18n: 'diag.server.check' }), h('th', { i18n: 'diag.server.status' }),
        h('th', { i18n: 'diag.server.seen' }), h('th', { i18n: 'diag.server.fixCol' }))),
      h('tbody', {}, rows)));
    const firstBad = (rep.checks || []).find((c) => c.status === 'fail') || (rep.checks || []).find((c) => c.status === 'warn');
    return result(rep.status === 'ok' ? 'ok' : rep.status, 'diag.server.result', n, { data: table, fix: firstBad ? firstBad.fix || '' : '' });
  }

  // check_conn publishes a test pattern the way a browser publisher does
  // (WHIP, non-trickle), with the STUN server of check 3 if one is given,
  // then reads pinhole's diagnosis of the session and ends it.
  async check_conn() {
    const room = TEST_ROOM_PREFIX + Math.random().toString(36).slice(2, 8);
    const stun = this.stunIn.input.value.trim();
    const stream = testPattern();
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: stun ? [{ urls: stun }] : [] });
    let resource = '';
    let sessionId = '';
    let connectedAt = 0;
    let stats = null;
    let t0 = performance.now();
    try {
      pc.addEventListener('icecandidate', (ev) => {
        if (ev.candidate && ev.candidate.candidate) this.logCandidate('conn', parseCandidate(ev.candidate));
      });
      for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      await pc.setLocalDescription(await pc.createOffer());
      await waitGathering(pc);
      const res = await request('POST', `/whip/${enc(room)}`, {
        body: pc.localDescription.sdp, headers: { 'Content-Type': 'application/sdp' },
      });
      const loc = res.headers.get('Location') || '';
      resource = loc ? new URL(loc, location.href).href : '';
      sessionId = loc ? sessionIdFrom(loc) : '';
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
      t0 = performance.now(); // connection time counts from the answer, as pinhole's timeline does
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, CONNECT_MS);
        const check = () => {
          if (pc.connectionState === 'connected' && !connectedAt) {
            connectedAt = performance.now();
            clearTimeout(timer);
            setTimeout(resolve, MEDIA_MS);
          } else if (pc.connectionState === 'failed') {
            clearTimeout(timer);
            resolve();
          }
        };
        pc.addEventListener('connectionstatechange', check);
        check();
      });
      stats = summarizeOut(await pc.getStats());
      await this.logPeerCandidates(pc);
    } finally {
      this.lastConnState = pc.connectionState;
      // End the session (before closing the peer, which would end it on
      // pinhole's side first) and the room it made.
      if (resource) await request('DELETE', resource).catch(() => {});
      await request('DELETE', `/api/v1/rooms/${enc(room)}`, { token: this.adminIn.input.value.trim() }).catch(() => {});
      pc.close();
      stream.getTracks().forEach((t) => t.stop());
    }
    const diag = sessionId ? await this.loadSession(sessionId) : null;
    const details = [];
    if (stats && stats.pair) details.push(tr('diag.conn.path', { pair: stats.pair }));
    const fix = diag && diag.verdict.status !== 'ok' ? diag.verdict.fix || '' : '';
    if (connectedAt && stats && stats.bytes > 0) {
      return result('ok', 'diag.conn.ok', { ms: Math.round(connectedAt - t0), kb: Math.round(stats.bytes / 1024) }, { details });
    }
    if (connectedAt) return result('fail', 'diag.conn.noMedia', null, { details, fix });
    const summary = diag ? diag.verdict.summary : `connection state ${this.lastConnState}`;
    return result('fail', 'diag.conn.fail', { summary }, { details, fix });
  }

  async check_self() {
    let res;
    try {
      res = await (await request('POST', '/api/v1/diagnostics/selftest', { json: {}, token: this.adminIn.input.value.trim() })).json();
    } catch (err) {
      // With --admin-token the self-test is a management request.
      if (err instanceof ApiError && err.status === 401) return result('warn', 'diag.self.needsToken');
      throw err;
    }
    if (res.session_id && res.diagnosis) this.sessions[res.session_id] = res.diagnosis;
    const details = [res.summary];
    const data = res.diagnosis && res.diagnosis.path ? renderPath(res.diagnosis.path, res.diagnosis.verdict) : null;
    if (res.status === 'ok') return result('ok', 'diag.self.ok', { target: res.target, ms: Math.round(res.connect_ms || 0) }, { details, data });
    return result('fail', 'diag.self.fail', { target: res.target || '?' }, { details, fix: res.fix || '', data });
  }

  // ------------------------------------------------------------ log, verdict, report

  logCandidate(source, c) {
    const entry = { at: Date.now(), source, ...c };
    this.candidates.push(entry);
    this.logEmpty.hidden = true;
    const cells = c.error
      ? [h('td', { v: 'error' }), h('td', { v: String(c.error.code) }), h('td', {}, tr('diag.candError', { code: c.error.code, url: c.error.url, text: c.error.text }))]
      : [h('td', { v: c.type }), h('td', { v: c.protocol }), h('td', { v: `${c.address}:${c.port}${c.relatedAddress ? ` (${c.relatedAddress}:${c.relatedPort})` : ''}` })];
    this.logBody.append(h('tr', { dataset: { type: c.error ? 'error' : c.type } },
      h('td', { v: fmtClock(entry.at) }), h('td', { v: source }), ...cells));
  }

  // logPeerCandidates adds the candidates of a finished peer from getStats.
  async logPeerCandidates(pc) {
    if (!pc) return;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'local-candidate' || s.type === 'remote-candidate') {
        this.logCandidate(s.type === 'local-candidate' ? 'conn (local)' : 'conn (pinhole)', {
          type: s.candidateType, protocol: s.protocol, address: s.address || s.ip, port: s.port,
        });
      }
    });
  }

  async loadSession(id) {
    try {
      const d = await getJSON(`/api/v1/sessions/${enc(id)}/diagnosis`);
      this.sessions[id] = d;
      this.renderSession(d);
      return d;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        this.sessionOut.replaceChildren(h('p', {}, badge('warn'), tr('diag.session.missing', { id })));
        return null;
      }
      throw err;
    }
  }

  renderSession(d) {
    const v = d.verdict;
    const headline = v.headline || v.summary;
    // Built with h() so that a missing fix (null) is skipped, not printed.
    this.sessionOut.replaceChildren(h('div', { class: 'diag-session', dataset: { verdict: v.id || v.code, hop: v.hop || '' } },
      h('h3', { i18n: 'diag.session.title', args: { id: d.session_id.slice(0, 8) } }),
      h('p', { class: 'diag-session-verdict', dataset: { status: v.status } }, badge(v.status), h('span', { v: headline })),
      h('p', { class: 'muted diag-verdict-id' }, tr('diag.path.verdictId'), ' ', h('code', { v: v.id || v.code }), ' ', tr('diag.path.atHop'), ' ', h('code', { v: v.hop || '-' })),
      v.fix ? h('p', {}, tr('diag.fix', null, 'span', { class: 'diag-fix' }), ' ', h('span', { v: v.fix })) : null,
      d.path && d.path.length ? renderPath(d.path, v) : null,
      v.evidence && v.evidence.length ? h('div', {}, h('p', {}, tr('diag.path.evidence', null, 'strong')),
        h('ul', { class: 'diag-evidence' }, v.evidence.map((e) => h('li', { v: e })))) : null,
      d.verdict_history && d.verdict_history.length ? h('div', {}, h('p', {}, tr('diag.path.history', null, 'strong')),
        h('ul', { class: 'diag-history' }, d.verdict_history.map((c) => h('li', { v: `+${Math.round(c.since_start_ms)} ms ${c.id} (${c.status}${c.hop ? `, ${c.hop}` : ''}): ${c.headline}` })))) : null,
      h('p', {}, tr('diag.session.hops', null, 'strong')),
      h('ul', { class: 'diag-hops' }, d.hops.map((hp) => h('li', {}, badge(hp.status), h('span', { v: hp.name })))),
      h('p', {}, tr('diag.session.timeline', null, 'strong')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'diag-table' }, h('tbody', {},
        d.timeline.map((e) => h('tr', { dataset: { kind: e.kind } }, h('td', { v: `+${Math.round(e.since_start_ms)} ms` }), h('td', { v: e.kind }), h('td', { v: e.detail || '' }))))))));
  }

  renderVerdict() {
    const ids = Object.keys(this.cards);
    const ran = ids.filter((id) => this.results[id]);
    let r;
    if (ids.some((id) => this.results[id] && this.results[id].status === 'running')) {
      r = result('pending', 'diag.verdict.pending');
    } else if (!ran.length) {
      r = null;
    } else {
      const bad = ran.find((id) => this.results[id].status === 'fail') || ran.find((id) => this.results[id].status === 'warn');
      if (!bad) r = result('ok', 'diag.verdict.ok');
      else {
        const br = this.results[bad];
        const [key, args] = TITLES[bad];
        r = { status: br.status, key: 'diag.verdict.fail', args: {}, fixKey: br.fixKey, fixArgs: br.fixArgs, fix: br.fix, details: [], title: [key, args], check: bad };
      }
    }
    this.verdictOut.dataset.status = r ? r.status : 'none';
    if (!r) {
      this.verdictOut.replaceChildren(tr('diag.verdict.none', null, 'p', { class: 'muted' }));
      return;
    }
    const line = h('p', {}, badge(r.status), tr(r.key, r.args));
    if (r.title) {
      // The failed check's own title, in the current language.
      line.replaceChildren(badge(r.status), tr('diag.verdict.fail'), ' ', h('strong', { i18n: r.title[0], args: r.title[1] }));
    }
    const parts = [line];
    if (r.fixKey) parts.push(h('p', {}, tr('diag.fix', null, 'span', { class: 'diag-fix' }), ' ', tr(r.fixKey, r.fixArgs)));
    if (r.fix) parts.push(h('p', {}, tr('diag.fix', null, 'span', { class: 'diag-fix' }), ' ', h('span', { v: r.fix })));
    this.verdictOut.replaceChildren(...parts);
  }

  reportJSON() {
    const conn = navigator.connection || {};
    const plain = {};
    for (const [id, r] of Object.entries(this.results)) {
      plain[id] = { status: r.status, message: r.key ? textOf(tr(r.key, r.args)) : '', details: (r.details || []).map((d) => (d instanceof Node ? d.textContent : d)), fix: r.fix || (r.fixKey ? textOf(tr(r.fixKey, r.fixArgs)) : '') };
    }
    return {
      generated_at: new Date().toISOString(),
      page: location.href,
      browser: {
        user_agent: navigator.userAgent,
        languages: navigator.languages,
        webrtc: !!window.RTCPeerConnection,
        // Network type hints (Network Information API, Chromium only).
        connection: { type: conn.type, effective_type: conn.effectiveType, downlink_mbps: conn.downlink, rtt_ms: conn.rtt },
        online: navigator.onLine,
        timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      },
      checks: plain,
      candidates: this.candidates,
      server_report: this.serverReport,
      sessions: this.sessions,
    };
  }

  async copy() {
    const text = JSON.stringify(this.reportJSON(), null, 2);
    this.reportText.value = text;
    try {
      await navigator.clipboard.writeText(text);
      this.reportText.hidden = true;
      this.copyOut.replaceChildren(h('div', { class: 'notice ok', role: 'status', id: 'diag-copied' }, tr('diag.copied', null, 'p')));
    } catch {
      this.reportText.hidden = false;
      this.reportText.select();
      this.copyOut.replaceChildren(h('div', { class: 'notice warn', role: 'status', id: 'diag-copied' }, tr('diag.copyManual', null, 'p')));
    }
  }
}

function badge(status) {
  return h('span', { class: 'diag-badge', dataset: { status }, i18n: `diag.status.${status === 'running' ? 'pending' : status}` });
}

function textOf(el) {
  return el.textContent;
}

// parseCandidate reads an RTCIceCandidate's fields (with a fallback to the
// candidate line for browsers that lack them).
function parseCandidate(c) {
  const f = c.candidate.split(' ');
  const raddr = f.indexOf('raddr');
  const rport = f.indexOf('rport');
  return {
    type: c.type || f[7],
    protocol: c.protocol || f[2],
    address: c.address || f[4],
    port: c.port || Number(f[5]),
    relatedAddress: c.relatedAddress || (raddr > 0 ? f[raddr + 1] : ''),
    relatedPort: c.relatedPort || (rport > 0 ? Number(f[rport + 1]) : 0),
  };
}

// summarizeOut sums the bytes sent and names the selected pair.
function summarizeOut(report) {
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  let bytes = 0;
  let pair = '';
  report.forEach((s) => {
    if (s.type === 'outbound-rtp') bytes += s.bytesSent || 0;
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const p = byId.get(s.selectedCandidatePairId);
      const l = p && byId.get(p.localCandidateId);
      const r = p && byId.get(p.remoteCandidateId);
      if (l && r) pair = `${l.address || l.ip}:${l.port} (${l.candidateType}) -> ${r.address || r.ip}:${r.port} (${r.candidateType})`;
    }
  });
  return { bytes, pair };
}

// testPattern is a moving canvas stream: no camera permission needed.
function testPattern() {
  const canvas = document.createElement('canvas');
  canvas.width = 320;
  canvas.height = 180;
  const g = canvas.getContext('2d');
  let frame = 0;
  const draw = () => {
    frame++;
    g.fillStyle = `hsl(${(frame * 3) % 360} 70% 45%)`;
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = '#fff';
    g.font = '24px sans-serif';
    g.fillText(`pinhole ${frame}`, 20, 100);
  };
  draw();
  const stream = canvas.captureStream(25);
  const timer = setInterval(draw, 40);
  const [track] = stream.getVideoTracks();
  track.addEventListener('ended', () => clearInterval(timer));
  const stop = track.stop.bind(track);
  track.stop = () => {
    clearInterval(timer);
    stop();
  };
  return stream;
}

