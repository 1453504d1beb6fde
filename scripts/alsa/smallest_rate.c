/*
 * smallest_rate: an ALSA playback device for the smallest_sync tests that
 * behaves like the fixed-rate sound hardware of a Raspberry Pi (USB DACs take
 * 44100/48000 Hz only, HDMI 48000 Hz stereo only), and records what it is given.
 *
 * Built by scripts/bootstrap.sh into .venv/alsa/ and named in the private ALSA
 * config it writes (.venv/alsa/devices.conf), e.g.
 *
 *   pcm_type.smallest_rate { lib "/abs/path/libasound_module_pcm_smallest_rate.so" }
 *   pcm.usb48 {
 *       type smallest_rate
 *       rates [ 44100 48000 ]      # default; every other rate is refused (EINVAL)
 *       channels_min 1             # default 1
 *       channels_max 2             # default 2
 *       step_us 1000               # default: the pointer moves in 1 ms steps
 *       capture "/dir/usb48.s16le" # every frame received, raw interleaved S16_LE
 *       log "/dir/usb48.log"       # one line per event, see below
 *   }
 *
 * Only S16_LE, interleaved (RW or mmap). There is no "plug" in front of it, so
 * PortAudio sees exactly these limits: a 24000 Hz stream gets paInvalidSampleRate.
 *
 * Real time: the hardware pointer starts at 0 on `start` and then advances with
 * CLOCK_MONOTONIC at the stream's rate, in whole steps of step_us (a USB DAC
 * reports its position once per 1 ms packet; 0 = frame by frame), never past
 * the frames the application has written. Underrun is reported the way the kernel does it:
 * when avail reaches stop_threshold (PortAudio: buffer size, i.e. the buffer
 * ran empty) the stream goes to XRUN and writes return -EPIPE until the
 * application prepares it again. A stop_threshold above the buffer size
 * (free-running) is treated as the buffer size. drop (snd_pcm_drop, PortAudio's
 * Pa_AbortStream / Pa_CloseStream) stops at once; drain plays to the last frame.
 * Not modelled: pause, rewind (PortAudio uses neither).
 *
 * Capture: appended at every transfer, in the order received. Nothing is
 * opened or created before the first `prepare` (PortAudio opens every device
 * just to list it).
 *
 * Log: one line per event, appended with a single write(), fields separated by
 * one space:
 *
 *   <t_ns> <event> <run> <frames> <hw> [key=value ...]
 *
 *   t_ns    CLOCK_MONOTONIC in nanoseconds (Python: time.monotonic_ns())
 *   event   prepare | start | write | xrun | drained | stop | close
 *   run     <pid>.<n>: n counts the prepares of this process; a run is one
 *           prepare..stop stretch of one stream, whose frames are contiguous in
 *           the capture file
 *   frames  frames received from the application in this run so far
 *   hw      frames of this run played so far (the hardware pointer, unwrapped)
 *
 *   prepare: rate= channels= offset= (byte offset of the run's first frame in
 *            the capture file) buffer= period= (frames) device= (PCM name)
 *   start:   t_ns is when frame 0 of the run starts playing; frame k plays at
 *            t_ns + k * 1e9 / rate, if k < the run's final hw
 *   xrun:    t_ns is when the buffer ran dry (computed, not when noticed)
 *   drained: t_ns is when the last frame finished playing (drain completed)
 *   stop:    t_ns is when the stream was dropped; frames >= hw were never heard
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>

#define MAX_RATES 16
#define NS 1000000000ULL

typedef struct {
	snd_pcm_ioplug_t io;
	char *device;		/* PCM name, for the log */
	char *capture_path;
	char *log_path;
	unsigned int rates[MAX_RATES];
	unsigned int nrates;
	unsigned int channels_min, channels_max;
	uint64_t step_ns;	/* the hardware pointer moves in steps this long (0: per frame) */

	pthread_mutex_t lock;	/* guards everything below; callbacks run with and without ALSA's lock */
	int timer_fd;		/* the poll descriptor: fires when the application may write again */
	int capture_fd, log_fd;	/* -1 until the first prepare */
	char run[48];
	int stopped;		/* this run's stop is logged */
	snd_pcm_uframes_t avail_min, stop_threshold;
	int running;		/* started and not stopped/xrun */
	int xrun;
	uint64_t t0;		/* CLOCK_MONOTONIC ns at start */
	uint64_t written;	/* frames received since prepare */
	uint64_t played;	/* frames played since prepare */
} smallest_t;

/* Prepares so far in this process (every PCM handle), for run ids. */
static unsigned int run_seq;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static uint64_t frames_to_ns(uint64_t frames, unsigned int rate)
{
	return (uint64_t)(((unsigned __int128)frames * NS + rate - 1) / rate);
}

static uint64_t ns_to_frames(uint64_t ns, unsigned int rate)
{
	return (uint64_t)(((unsigned __int128)ns * rate) / NS);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* called with s->lock held */
static void log_event(smallest_t *s, uint64_t t, const char *event, const char *fmt, ...)
{
	char line[512];
	int n;

	if (s->log_fd < 0)
		return;
	n = snprintf(line, sizeof(line), "%" PRIu64 " %s %s %" PRIu64 " %" PRIu64,
		     t, event, s->run, s->written, s->played);
	if (fmt && n > 0 && n < (int)sizeof(line)) {
		va_list ap;
		line[n++] = ' ';
		va_start(ap, fmt);
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	if (n < 0)
		return;
	if (n >= (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	write_all(s->log_fd, line, (size_t)n);	/* O_APPEND: one write is one line */
}

/* Frames the hardware has played `ns` after start: whole steps only, as a USB
 * DAC reports its position once per 1 ms packet. */
static uint64_t hw_frames(const smallest_t *s, uint64_t ns)
{
	if (s->step_ns)
		ns -= ns % s->step_ns;
	return ns_to_frames(ns, s->io.rate);
}

/* When (ns after start) the hardware pointer reaches `frames`. */
static uint64_t hw_time(const smallest_t *s, uint64_t frames)
{
	uint64_t ns = frames_to_ns(frames, s->io.rate);
	if (s->step_ns && ns % s->step_ns)
		ns += s->step_ns - ns % s->step_ns;
	return ns;
}

/* Advance the hardware pointer to `now`; called with s->lock held. */
static void advance(smallest_t *s, uint64_t now)
{
	snd_pcm_ioplug_t *io = &s->io;
	uint64_t elapsed, limit, gap;
	snd_pcm_uframes_t stop_thr;

	if (!s->running)
		return;
	elapsed = now > s->t0 ? hw_frames(s, now - s->t0) : 0;
	if (io->state == SND_PCM_STATE_DRAINING) {
		s->played = elapsed < s->written ? elapsed : s->written;
		return;
	}
	/* The kernel's rule: XRUN once avail >= stop_threshold. */
	stop_thr = s->stop_threshold < io->buffer_size ? s->stop_threshold : io->buffer_size;
	gap = io->buffer_size - stop_thr;
	limit = s->written > gap ? s->written - gap : 0;
	if (elapsed >= limit) {
		s->played = limit;
		s->running = 0;
		s->xrun = 1;
		log_event(s, s->t0 + frames_to_ns(limit, io->rate), "xrun", NULL);
	} else {
		s->played = elapsed;
	}
}

/* Arm the poll timer for the next moment the application can act; s->lock held. */
static void rearm(smallest_t *s)
{
	snd_pcm_ioplug_t *io = &s->io;
	struct itimerspec its;
	uint64_t when = 0, target;

	memset(&its, 0, sizeof(its));
	if (s->xrun) {
		when = 1;	/* wake pollers at once: they must see the error */
	} else if (s->running) {
		if (io->state == SND_PCM_STATE_DRAINING) {
			target = s->written;
		} else {
			/* avail >= avail_min once hw >= written + avail_min - buffer_size ... */
			uint64_t room = s->written + s->avail_min;
			target = room > io->buffer_size ? room - io->buffer_size : 0;
			/* ... or the buffer runs dry (XRUN), whichever is first. */
			if (target > s->written)
				target = s->written;
		}
		when = target <= s->played ? 1 : s->t0 + hw_time(s, target);
	} else if (io->buffer_size && s->written + s->avail_min <= io->buffer_size) {
		when = 1;	/* not started, room for avail_min frames */
	}
	if (when) {
		its.it_value.tv_sec = (time_t)(when / NS);
		its.it_value.tv_nsec = (long)(when % NS);
		if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
			its.it_value.tv_nsec = 1;
	}
	timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int sm_start(snd_pcm_ioplug_t *io)
{
	smallest_t *s = io->private_data;

	pthread_mutex_lock(&s->lock);
	s->t0 = now_ns();
	s->running = 1;
	s->xrun = 0;
	log_event(s, s->t0, "start", NULL);
	rearm(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int sm_stop(snd_pcm_ioplug_t *io)
{
	smallest_t *s = io->private_data;
	uint64_t now = now_ns();

	pthread_mutex_lock(&s->lock);
	if (s->running) {
		advance(s, now);
		if (io->state == SND_PCM_STATE_DRAINING && s->played >= s->written)
			log_event(s, s->t0 + frames_to_ns(s->written, io->rate), "drained", NULL);
		else if (s->running)
			log_event(s, now, "stop", NULL);
		s->stopped = 1;
	} else if (!s->stopped && (s->xrun || s->written)) {
		log_event(s, now, "stop", NULL);	/* after an xrun, or never started */
		s->stopped = 1;
	}
	s->running = 0;
	s->xrun = 0;
	rearm(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static snd_pcm_sframes_t sm_pointer(snd_pcm_ioplug_t *io)
{
	smallest_t *s = io->private_data;
	snd_pcm_sframes_t pos;

	pthread_mutex_lock(&s->lock);
	advance(s, now_ns());
	if (s->xrun)
		pos = -EPIPE;
	else
		pos = (snd_pcm_sframes_t)(s->played % io->buffer_size);
	pthread_mutex_unlock(&s->lock);
	return pos;
}

static snd_pcm_sframes_t sm_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
				     snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	smallest_t *s = io->private_data;
	const size_t frame_bytes = (size_t)io->channels * 2;
	const char *buf = (const char *)areas[0].addr + (areas[0].first + offset * areas[0].step) / 8;
	uint64_t now;
	int err;

	pthread_mutex_lock(&s->lock);
	if (s->capture_fd < 0) {
		pthread_mutex_unlock(&s->lock);
		return -EBADFD;
	}
	err = write_all(s->capture_fd, buf, size * frame_bytes);
	if (err < 0) {
		pthread_mutex_unlock(&s->lock);
		SNDERR("smallest_rate: writing %s: %s", s->capture_path, strerror(-err));
		return err;
	}
	now = now_ns();
	advance(s, now);
	s->written += size;
	log_event(s, now, "write", NULL);	/* the pointer as of t_ns */
	rearm(s);
	pthread_mutex_unlock(&s->lock);
	return (snd_pcm_sframes_t)size;
}

static int open_output(const char *path, int *fd)
{
	if (*fd >= 0)
		return 0;
	*fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (*fd < 0) {
		int err = -errno;
		SNDERR("smallest_rate: cannot open %s: %s", path, strerror(errno));
		return err;
	}
	return 0;
}

static int sm_prepare(snd_pcm_ioplug_t *io)
{
	smallest_t *s = io->private_data;
	off_t offset;
	int err;

	pthread_mutex_lock(&s->lock);
	err = open_output(s->capture_path, &s->capture_fd);
	if (!err)
		err = open_output(s->log_path, &s->log_fd);
	if (err) {
		pthread_mutex_unlock(&s->lock);
		return err;
	}
	offset = lseek(s->capture_fd, 0, SEEK_END);
	snprintf(s->run, sizeof(s->run), "%ld.%u", (long)getpid(),
		 __atomic_add_fetch(&run_seq, 1, __ATOMIC_RELAXED));
	s->written = s->played = 0;
	s->running = s->xrun = s->stopped = 0;
	log_event(s, now_ns(), "prepare", "rate=%u channels=%u offset=%lld buffer=%lu period=%lu device=%s",
		  io->rate, io->channels, (long long)offset, (unsigned long)io->buffer_size,
		  (unsigned long)io->period_size, s->device);
	rearm(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int sm_hw_params(snd_pcm_ioplug_t *io, snd_pcm_hw_params_t *params)
{
	smallest_t *s = io->private_data;
	(void)params;
	pthread_mutex_lock(&s->lock);
	/* ALSA's defaults until sw_params says otherwise */
	s->avail_min = io->period_size;
	s->stop_threshold = io->buffer_size;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int sm_sw_params(snd_pcm_ioplug_t *io, snd_pcm_sw_params_t *params)
{
	smallest_t *s = io->private_data;
	snd_pcm_uframes_t avail_min = 1, stop_thr = 0;

	snd_pcm_sw_params_get_avail_min(params, &avail_min);
	snd_pcm_sw_params_get_stop_threshold(params, &stop_thr);
	pthread_mutex_lock(&s->lock);
	s->avail_min = avail_min ? avail_min : 1;
	s->stop_threshold = stop_thr;
	rearm(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int sm_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned int nfds,
			   unsigned short *revents)
{
	smallest_t *s = io->private_data;
	snd_pcm_sframes_t avail;
	uint64_t expirations;
	snd_pcm_uframes_t avail_min;

	(void)pfd;
	(void)nfds;
	while (read(s->timer_fd, &expirations, sizeof(expirations)) < 0 && errno == EINTR)
		;
	/* Unlocked here, so ALSA may update its pointers (and notice XRUN). */
	avail = snd_pcm_avail_update(io->pcm);
	pthread_mutex_lock(&s->lock);
	avail_min = s->avail_min;
	rearm(s);
	pthread_mutex_unlock(&s->lock);
	if (avail < 0)
		*revents = POLLOUT | POLLERR;
	else if ((snd_pcm_uframes_t)avail >= avail_min)
		*revents = POLLOUT;
	else
		*revents = 0;
	return 0;
}

static int sm_close(snd_pcm_ioplug_t *io)
{
	smallest_t *s = io->private_data;

	pthread_mutex_lock(&s->lock);
	log_event(s, now_ns(), "close", NULL);
	pthread_mutex_unlock(&s->lock);
	if (s->capture_fd >= 0)
		close(s->capture_fd);
	if (s->log_fd >= 0)
		close(s->log_fd);
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	pthread_mutex_destroy(&s->lock);
	free(s->device);
	free(s->capture_path);
	free(s->log_path);
	free(s);
	return 0;
}

static void sm_dump(snd_pcm_ioplug_t *io, snd_output_t *out)
{
	smallest_t *s = io->private_data;
	unsigned int i;

	snd_output_printf(out, "smallest_rate test device %s: rates", s->device);
	for (i = 0; i < s->nrates; i++)
		snd_output_printf(out, " %u", s->rates[i]);
	snd_output_printf(out, ", channels %u-%u, S16_LE, pointer step %" PRIu64 " us; capture %s, log %s\n",
			  s->channels_min, s->channels_max, s->step_ns / 1000, s->capture_path, s->log_path);
	if (io->state >= SND_PCM_STATE_SETUP) {
		snd_output_printf(out, "Its setup is:\n");
		snd_pcm_dump_setup(io->pcm, out);
	}
}

static const snd_pcm_ioplug_callback_t smallest_callback = {
	.start = sm_start,
	.stop = sm_stop,
	.pointer = sm_pointer,
	.transfer = sm_transfer,
	.close = sm_close,
	.hw_params = sm_hw_params,
	.sw_params = sm_sw_params,
	.prepare = sm_prepare,
	.poll_revents = sm_poll_revents,
	.dump = sm_dump,
};

static int set_constraints(smallest_t *s)
{
	static const unsigned int access[] = {
		SND_PCM_ACCESS_RW_INTERLEAVED,
		SND_PCM_ACCESS_MMAP_INTERLEAVED,
	};
	static const unsigned int formats[] = { SND_PCM_FORMAT_S16_LE };
	snd_pcm_ioplug_t *io = &s->io;
	int err;

	if ((err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_ACCESS, 2, access)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_FORMAT, 1, formats)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_CHANNELS,
						   s->channels_min, s->channels_max)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_RATE, s->nrates, s->rates)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIOD_BYTES, 64, 512 * 1024)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIODS, 2, 1024)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_BUFFER_BYTES, 256, 4 * 1024 * 1024)) < 0)
		return err;
	return 0;
}

static int parse_uint(snd_config_t *n, const char *id, unsigned int *val)
{
	long v;
	if (snd_config_get_integer(n, &v) < 0 || v <= 0) {
		SNDERR("smallest_rate: %s must be a positive integer", id);
		return -EINVAL;
	}
	*val = (unsigned int)v;
	return 0;
}

SND_PCM_PLUGIN_DEFINE_FUNC(smallest_rate)
{
	snd_config_iterator_t i, next;
	smallest_t *s;
	const char *capture = NULL, *log = NULL;
	int err;

	(void)root;
	/* No capture side, like a DAC; quietly, as PortAudio probes every device both ways. */
	if (stream != SND_PCM_STREAM_PLAYBACK)
		return -ENOENT;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->rates[0] = 44100;
	s->rates[1] = 48000;
	s->nrates = 2;
	s->channels_min = 1;
	s->channels_max = 2;
	s->step_ns = 1000000;
	s->capture_fd = s->log_fd = -1;
	s->timer_fd = -1;
	pthread_mutex_init(&s->lock, NULL);

	snd_config_for_each(i, next, conf) {
		snd_config_t *n = snd_config_iterator_entry(i);
		const char *id;
		if (snd_config_get_id(n, &id) < 0)
			continue;
		if (strcmp(id, "comment") == 0 || strcmp(id, "type") == 0 || strcmp(id, "hint") == 0)
			continue;
		if (strcmp(id, "capture") == 0) {
			if (snd_config_get_string(n, &capture) < 0) {
				SNDERR("smallest_rate: capture must be a path");
				err = -EINVAL;
				goto error;
			}
		} else if (strcmp(id, "log") == 0) {
			if (snd_config_get_string(n, &log) < 0) {
				SNDERR("smallest_rate: log must be a path");
				err = -EINVAL;
				goto error;
			}
		} else if (strcmp(id, "rates") == 0) {
			snd_config_iterator_t j, jnext;
			s->nrates = 0;
			snd_config_for_each(j, jnext, n) {
				if (s->nrates == MAX_RATES) {
					SNDERR("smallest_rate: at most %d rates", MAX_RATES);
					err = -EINVAL;
					goto error;
				}
				if ((err = parse_uint(snd_config_iterator_entry(j), id, &s->rates[s->nrates])) < 0)
					goto error;
				s->nrates++;
			}
			if (s->nrates == 0) {
				SNDERR("smallest_rate: rates is empty");
				err = -EINVAL;
				goto error;
			}
		} else if (strcmp(id, "channels_min") == 0) {
			if ((err = parse_uint(n, id, &s->channels_min)) < 0)
				goto error;
		} else if (strcmp(id, "channels_max") == 0) {
			if ((err = parse_uint(n, id, &s->channels_max)) < 0)
				goto error;
		} else if (strcmp(id, "step_us") == 0) {
			long v;
			if (snd_config_get_integer(n, &v) < 0 || v < 0) {
				SNDERR("smallest_rate: step_us must be an integer >= 0");
				err = -EINVAL;
				goto error;
			}
			s->step_ns = (uint64_t)v * 1000;
		} else {
			SNDERR("smallest_rate: unknown field %s", id);
			err = -EINVAL;
			goto error;
		}
	}
	if (!capture || !log) {
		SNDERR("smallest_rate: %s needs both capture and log paths", name);
		err = -EINVAL;
		goto error;
	}
	if (s->channels_min > s->channels_max) {
		SNDERR("smallest_rate: channels_min > channels_max");
		err = -EINVAL;
		goto error;
	}
	s->device = strdup(name ? name : "smallest_rate");
	s->capture_path = strdup(capture);
	s->log_path = strdup(log);
	s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!s->device || !s->capture_path || !s->log_path || s->timer_fd < 0) {
		err = s->timer_fd < 0 ? -errno : -ENOMEM;
		goto error;
	}

	s->io.version = SND_PCM_IOPLUG_VERSION;
	s->io.name = "smallest_sync rate-limited test device";
	s->io.callback = &smallest_callback;
	s->io.private_data = s;
	s->io.flags = SND_PCM_IOPLUG_FLAG_MONOTONIC;
	s->io.poll_fd = s->timer_fd;
	s->io.poll_events = POLLIN;
	s->io.mmap_rw = 0;

	err = snd_pcm_ioplug_create(&s->io, name, stream, mode);
	if (err < 0)
		goto error;
	err = set_constraints(s);
	if (err < 0) {
		snd_pcm_ioplug_delete(&s->io);	/* calls sm_close, which frees s */
		return err;
	}
	*pcmp = s->io.pcm;
	return 0;

error:
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	pthread_mutex_destroy(&s->lock);
	free(s->device);
	free(s->capture_path);
	free(s->log_path);
	free(s);
	return err;
}

SND_PCM_PLUGIN_SYMBOL(smallest_rate);
