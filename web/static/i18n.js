// Translations and the language switch.
//
// Every visible label is an element carrying data-i18n="key" (its text),
// data-i18n-placeholder, data-i18n-title or data-i18n-aria-label (its
// attributes). Switching the language re-renders them all in place, so
// pages never rebuild their DOM for it. Arguments (data-i18n-args, JSON) are
// inserted as <span data-v> elements: they are data (room names, numbers,
// addresses), never translated, and the browser test skips them when it
// checks that no English label is left.
//
// Another module (diagnostics.js) adds its own keys with addMessages.

const STORAGE_KEY = 'pinhole.lang';

/** Supported languages, in the order the switch shows them. */
export const LANGS = ['en', 'zh-CN'];

const secs = (n) => Math.max(0, Math.round(n));

function agoEn(a) {
  const s = secs(a.s);
  if (s < 5) return 'just now';
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function agoZh(a) {
  const s = secs(a.s);
  if (s < 5) return '刚刚';
  if (s < 90) return `${s} 秒前`;
  if (s < 5400) return `${Math.round(s / 60)} 分钟前`;
  return `${Math.round(s / 3600)} 小时前`;
}

const messages = {
  en: {
    'app.skip': 'Skip to content',
    'nav.label': 'Main navigation',
    'nav.rooms': 'Rooms',
    'nav.ports': 'Ports',
    'nav.diagnostics': 'Diagnostics',
    'nav.api': 'API docs',
    'lang.label': 'Language',
    'live.updated': 'Updated {time}',
    'live.failed': 'Refresh failed, retrying',
    'time.ago': agoEn,
    'page.notFound': 'Page not found.',
    'page.home': 'Go to rooms',

    'rooms.title': 'Rooms',
    'rooms.intro': 'A room holds publishers (WHIP) and viewers (WHEP). The counts refresh on their own.',
    'rooms.create': 'Create a room',
    'rooms.name': 'Room name',
    'rooms.nameHint': "Letters, digits, '-', '_' and '.', up to 64 characters.",
    'rooms.tokens': 'Access tokens (optional)',
    'rooms.publishToken': 'Publish token',
    'rooms.viewToken': 'View token',
    'rooms.tokenHint': 'From 8 to 256 characters. Publishers or viewers must then present it.',
    'rooms.createBtn': 'Create room',
    'admin.title': 'Admin token',
    'admin.hint': 'Needed to create and delete rooms when pinhole runs with an admin token. Kept in this browser tab only.',
    'rooms.created': 'Room {name} created.',
    'rooms.deleted': 'Room {name} deleted.',
    'rooms.list': 'All rooms',
    'rooms.empty': 'No rooms yet. Create one above, or publish into any room name with a WHIP client.',
    'rooms.open': 'Open',
    'rooms.delete': 'Delete',
    'rooms.confirm': 'Delete room {name} and end its sessions?',
    'rooms.confirmYes': 'Delete',
    'rooms.cancel': 'Cancel',
    'col.name': 'Name',
    'col.publishers': 'Publishers',
    'col.viewers': 'Viewers',
    'col.created': 'Created',
    'col.access': 'Access',
    'col.actions': 'Actions',
    'access.open': 'Open to all',
    'access.publish': 'Publish token',
    'access.view': 'View token',

    'room.title': 'Room {name}',
    'room.back': 'All rooms',
    'room.counts': '{p} publishing, {v} watching',
    'room.missing': 'Room {name} does not exist yet.',
    'room.missingHint': 'Create it, or start publishing: pinhole creates rooms on first use when configured to.',
    'room.createIt': 'Create room',

    'pub.title': 'Publish',
    'pub.source': 'Source',
    'src.av': 'Camera and microphone',
    'src.video': 'Camera only',
    'src.audio': 'Microphone only',
    'src.screen': 'Screen',
    'pub.camera': 'Camera',
    'pub.mic': 'Microphone',
    'pub.codec': 'Video codec',
    'codec.auto': 'Automatic',
    'pub.token': 'Publish token',
    'pub.start': 'Start publishing',
    'pub.stop': 'Stop publishing',
    'pub.idle': 'Not publishing.',
    'pub.preview': 'Your preview',
    'dev.default': 'Default device',
    'dev.camera': 'Camera {n}',
    'dev.mic': 'Microphone {n}',

    'status.starting': 'Starting…',
    'status.gathering': 'Gathering network candidates…',
    'status.sending': 'Contacting pinhole…',
    'status.connecting': 'Connecting…',
    'status.publishing': 'Publishing',
    'status.watching': 'Watching',
    'status.stopped': 'Stopped.',
    'status.ended': 'pinhole ended this session.',
    'status.waiting': 'Waiting for media…',

    'watch.title': 'Watch',
    'watch.auto': 'Watch every publisher in this room',
    'watch.token': 'View token',
    'watch.none': 'No one else is publishing in this room.',
    'player.title': 'Publisher {id}',
    'player.unmute': 'Unmute',
    'player.mute': 'Mute',
    'player.stop': 'Stop watching',
    'player.retry': 'Watch again',
    'player.firstFrame': 'First frame after {ms} ms',

    'part.title': 'Participants',
    'part.none': 'No one is here.',
    'part.you': 'you',
    'role.publisher': 'publisher',
    'role.viewer': 'viewer',
    'state.new': 'new',
    'state.connecting': 'connecting',
    'state.connected': 'connected',
    'state.disconnected': 'disconnected',
    'state.failed': 'failed',
    'state.closed': 'closed',
    'state.free': 'free',
    'state.leased': 'leased',

    'stat.title': 'Live statistics',
    'stat.state': 'State',
    'stat.bitrate': 'Bitrate',
    'stat.fps': 'Frame rate',
    'stat.resolution': 'Resolution',
    'stat.rtt': 'Round-trip time',
    'stat.loss': 'Packet loss',
    'stat.pair': 'Candidate pair',
    'stat.localPort': 'Leased port',
    'stat.publicAddr': 'Public address',
    'stat.framesEncoded': 'Frames encoded',
    'stat.framesDecoded': 'Frames decoded',
    'stat.audioSent': 'Audio packets sent',
    'stat.audioReceived': 'Audio packets received',
    'stat.codec': 'Codecs',
    'stat.session': 'Session',
    'unit.fps': '{n} fps',
    'unit.ms': '{n} ms',

    'err.permission': "Camera or microphone access was refused. Allow it in the browser's site settings (the icon next to the address), then try again.",
    'err.noDevice': 'No camera or microphone was found.',
    'err.deviceBusy': 'The camera or microphone is in use by another program.',
    'err.screen': 'Screen sharing was cancelled or refused.',
    'err.insecure': 'Browsers only allow camera access on HTTPS or localhost pages. Open pinhole over HTTPS or from localhost.',
    'err.unsupported': 'This browser does not support WebRTC.',
    'err.poolFull': 'All UDP ports are in use ({leased} of {total}). Try again in {retry} s.',
    'err.roomMissing': 'Room {room} does not exist.',
    'err.roomsLink': 'See all rooms',
    'err.unauthorized': 'This room needs a valid token.',
    'err.admin': "Creating and deleting rooms needs pinhole's admin token: enter it under \"Admin token\".",
    'err.connFailed': "The connection failed: no media path between this browser and pinhole's UDP port.",
    'err.diagLink': 'Open diagnostics',
    'err.network': 'Cannot reach pinhole.',
    'err.http': 'Request failed with status {status}.',
    'err.badName': 'Enter a valid room name.',

    'ports.title': 'Ports',
    'ports.intro': 'The UDP port range pinhole leases to peers, one cell per port. It refreshes every second.',
    'ports.total': 'Total',
    'ports.leased': 'Leased',
    'ports.free': 'Free',
    'ports.perPort': 'Peers per port',
    'ports.public': 'Public address',
    'ports.since': 'Since',
    'ports.packets': 'Packets seen',
    'ports.lastPacket': 'Last packet',
    'ports.never': 'never',
    'ports.empty': 'No ports are configured.',
    'ports.map': 'Port map',

    'diag.title': 'Diagnostics',
    'diag.placeholder': 'Connection checks will appear here.',
  },
  'zh-CN': {
    'app.skip': '跳到主要内容',
    'nav.label': '主导航',
    'nav.rooms': '房间',
    'nav.ports': '端口',
    'nav.diagnostics': '诊断',
    'nav.api': '接口文档',
    'lang.label': '语言',
    'live.updated': '更新于 {time}',
    'live.failed': '刷新失败，正在重试',
    'time.ago': agoZh,
    'page.notFound': '页面不存在。',
    'page.home': '前往房间列表',

    'rooms.title': '房间',
    'rooms.intro': '房间里有发布者（WHIP）和观看者（WHEP）。人数会自动刷新。',
    'rooms.create': '创建房间',
    'rooms.name': '房间名称',
    'rooms.nameHint': '字母、数字、“-”、“_”和“.”，最多 64 个字符。',
    'rooms.tokens': '访问令牌（可选）',
    'rooms.publishToken': '发布令牌',
    'rooms.viewToken': '观看令牌',
    'rooms.tokenHint': '8 到 256 个字符。设置后，发布者或观看者必须提供该令牌。',
    'rooms.createBtn': '创建房间',
    'admin.title': '管理令牌',
    'admin.hint': '当 pinhole 设置了管理令牌时，创建和删除房间需要它。只保存在当前浏览器标签页中。',
    'rooms.created': '已创建房间 {name}。',
    'rooms.deleted': '已删除房间 {name}。',
    'rooms.list': '所有房间',
    'rooms.empty': '还没有房间。可在上方创建，或用任意 WHIP 客户端向任一房间名发布。',
    'rooms.open': '进入',
    'rooms.delete': '删除',
    'rooms.confirm': '删除房间 {name} 并结束其中的会话？',
    'rooms.confirmYes': '确认删除',
    'rooms.cancel': '取消',
    'col.name': '名称',
    'col.publishers': '发布者',
    'col.viewers': '观看者',
    'col.created': '创建时间',
    'col.access': '访问',
    'col.actions': '操作',
    'access.open': '公开',
    'access.publish': '发布需令牌',
    'access.view': '观看需令牌',

    'room.title': '房间 {name}',
    'room.back': '所有房间',
    'room.counts': '{p} 人发布，{v} 人观看',
    'room.missing': '房间 {name} 还不存在。',
    'room.missingHint': '可以创建它，或直接开始发布：若服务器允许，首次使用时会自动创建房间。',
    'room.createIt': '创建房间',

    'pub.title': '发布',
    'pub.source': '来源',
    'src.av': '摄像头和麦克风',
    'src.video': '仅摄像头',
    'src.audio': '仅麦克风',
    'src.screen': '屏幕',
    'pub.camera': '摄像头',
    'pub.mic': '麦克风',
    'pub.codec': '视频编码',
    'codec.auto': '自动',
    'pub.token': '发布令牌',
    'pub.start': '开始发布',
    'pub.stop': '停止发布',
    'pub.idle': '未在发布。',
    'pub.preview': '本地预览',
    'dev.default': '默认设备',
    'dev.camera': '摄像头 {n}',
    'dev.mic': '麦克风 {n}',

    'status.starting': '正在启动…',
    'status.gathering': '正在收集网络候选地址…',
    'status.sending': '正在联系服务器…',
    'status.connecting': '正在连接…',
    'status.publishing': '正在发布',
    'status.watching': '正在观看',
    'status.stopped': '已停止。',
    'status.ended': 'pinhole 已结束此会话。',
    'status.waiting': '正在等待媒体…',

    'watch.title': '观看',
    'watch.auto': '观看此房间的所有发布者',
    'watch.token': '观看令牌',
    'watch.none': '此房间没有其他人在发布。',
    'player.title': '发布者 {id}',
    'player.unmute': '取消静音',
    'player.mute': '静音',
    'player.stop': '停止观看',
    'player.retry': '重新观看',
    'player.firstFrame': '{ms} 毫秒后显示首帧',

    'part.title': '参与者',
    'part.none': '这里还没有人。',
    'part.you': '你',
    'role.publisher': '发布者',
    'role.viewer': '观看者',
    'state.new': '新建',
    'state.connecting': '连接中',
    'state.connected': '已连接',
    'state.disconnected': '已断开',
    'state.failed': '失败',
    'state.closed': '已关闭',
    'state.free': '空闲',
    'state.leased': '已租用',

    'stat.title': '实时统计',
    'stat.state': '状态',
    'stat.bitrate': '码率',
    'stat.fps': '帧率',
    'stat.resolution': '分辨率',
    'stat.rtt': '往返时延',
    'stat.loss': '丢包率',
    'stat.pair': '候选地址对',
    'stat.localPort': '租用端口',
    'stat.publicAddr': '公网地址',
    'stat.framesEncoded': '已编码帧数',
    'stat.framesDecoded': '已解码帧数',
    'stat.audioSent': '已发送音频包',
    'stat.audioReceived': '已接收音频包',
    'stat.codec': '编码格式',
    'stat.session': '会话',
    'unit.fps': '{n} 帧/秒',
    'unit.ms': '{n} 毫秒',

    'err.permission': '摄像头或麦克风权限被拒绝。请在浏览器的网站设置（地址栏旁的图标）中允许访问，然后重试。',
    'err.noDevice': '未找到摄像头或麦克风。',
    'err.deviceBusy': '摄像头或麦克风正被其他程序占用。',
    'err.screen': '屏幕共享已取消或被拒绝。',
    'err.insecure': '浏览器只允许在 HTTPS 或 localhost 页面中使用摄像头。请通过 HTTPS 或在本机打开 pinhole。',
    'err.unsupported': '此浏览器不支持 WebRTC。',
    'err.poolFull': '所有 UDP 端口都在使用中（{leased}/{total}）。请在 {retry} 秒后重试。',
    'err.roomMissing': '房间 {room} 不存在。',
    'err.roomsLink': '查看所有房间',
    'err.unauthorized': '此房间需要有效的令牌。',
    'err.admin': '创建和删除房间需要 pinhole 的管理令牌：请在“管理令牌”中填写。',
    'err.connFailed': '连接失败：浏览器与 pinhole 的 UDP 端口之间没有可用的媒体通路。',
    'err.diagLink': '打开诊断',
    'err.network': '无法连接到 pinhole。',
    'err.http': '请求失败，状态码 {status}。',
    'err.badName': '请输入有效的房间名称。',

    'ports.title': '端口',
    'ports.intro': 'pinhole 分配给连接的 UDP 端口范围，每个端口一格，每秒刷新。',
    'ports.total': '总数',
    'ports.leased': '已租用',
    'ports.free': '空闲',
    'ports.perPort': '每端口连接数',
    'ports.public': '公网地址',
    'ports.since': '起始',
    'ports.packets': '收到的包',
    'ports.lastPacket': '最后一个包',
    'ports.never': '从未',
    'ports.empty': '没有配置端口。',
    'ports.map': '端口分布',

    'diag.title': '诊断',
    'diag.placeholder': '连接检查结果将显示在这里。',
  },
};

let current = 'en';

/** The current language tag, e.g. "zh-CN". */
export function lang() {
  return current;
}

/**
 * addMessages merges a module's own translations, e.g.
 * addMessages({en: {'diag.x': 'X'}, 'zh-CN': {'diag.x': '某'}}).
 */
export function addMessages(byLang) {
  for (const [l, dict] of Object.entries(byLang)) {
    messages[l] = Object.assign(messages[l] || {}, dict);
  }
}

function lookup(key) {
  const m = messages[current]?.[key] ?? messages.en[key];
  if (m === undefined) {
    console.warn(`pinhole: missing translation ${key}`);
    return key;
  }
  return m;
}

/** t returns the message for key as plain text, with {name} arguments filled in. */
export function t(key, args = {}) {
  const m = lookup(key);
  if (typeof m === 'function') return m(args);
  return m.replace(/\{(\w+)\}/g, (_, k) => (k in args ? String(args[k]) : `{${k}}`));
}

// render fills el with the message, arguments as <span data-v> nodes.
function render(el, key, args) {
  const m = lookup(key);
  if (typeof m === 'function') {
    el.textContent = m(args);
    return;
  }
  const parts = [];
  let last = 0;
  for (const match of m.matchAll(/\{(\w+)\}/g)) {
    parts.push(m.slice(last, match.index));
    const v = document.createElement('span');
    v.dataset.v = '';
    v.textContent = match[1] in args ? String(args[match[1]]) : match[0];
    parts.push(v);
    last = match.index + match[0].length;
  }
  parts.push(m.slice(last));
  el.replaceChildren(...parts.filter((p) => p !== ''));
}

/** localize (re)translates one element carrying data-i18n* attributes. */
export function localize(el) {
  const d = el.dataset;
  if (d.i18n) render(el, d.i18n, d.i18nArgs ? JSON.parse(d.i18nArgs) : {});
  if (d.i18nPlaceholder) el.placeholder = t(d.i18nPlaceholder);
  if (d.i18nTitle) el.title = t(d.i18nTitle);
  if (d.i18nAriaLabel) el.setAttribute('aria-label', t(d.i18nAriaLabel));
}

const SELECTOR = '[data-i18n],[data-i18n-placeholder],[data-i18n-title],[data-i18n-aria-label]';

/** applyI18n translates root and everything under it. */
export function applyI18n(root = document.body) {
  if (root.matches?.(SELECTOR)) localize(root);
  root.querySelectorAll(SELECTOR).forEach(localize);
}

/** pick chooses the language: remembered choice, else the browser's. */
export function pick() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage can be disabled; the browser language still works.
  }
  if (LANGS.includes(saved)) return saved;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    if (/^zh\b/i.test(l)) return 'zh-CN';
    if (/^en\b/i.test(l)) return 'en';
  }
  return 'en';
}

/** setLang switches the language, remembers it and retranslates the page. */
export function setLang(l, remember = true) {
  current = LANGS.includes(l) ? l : 'en';
  document.documentElement.lang = current;
  if (remember) {
    try {
      localStorage.setItem(STORAGE_KEY, current);
    } catch {
      // Not remembered, but switched.
    }
  }
  applyI18n(document.body);
  document.dispatchEvent(new CustomEvent('pinhole:lang', { detail: current }));
}
